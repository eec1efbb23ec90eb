"""Clip-Cov and KL-Cov (Cui et al., 2025): PPO losses that act on the few tokens whose log-prob and
advantage covary most, to keep the policy's entropy from collapsing; as veRL computes them."""

from __future__ import annotations

import torch

from verlvl.algos.aggregation import agg_loss
from verlvl.algos.losses import (clip_range, policy_loss_option, register_policy_loss, truncated_is_weight,
                                 zero_metric)
from verlvl.algos.masked import masked_mean


def token_covariance(advantages: torch.Tensor, log_prob: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each token's (A - mean A) * (log_prob - mean log_prob), the means over the masked tokens (detached)."""
    advantages, log_prob = advantages.detach(), log_prob.detach()
    return (advantages - masked_mean(advantages, mask)) * (log_prob - masked_mean(log_prob, mask))


@register_policy_loss("clip_cov")
def compute_policy_loss_clip_cov(old_log_prob, log_prob, advantages, response_mask,
                                 loss_agg_mode="token-mean", config=None, rollout_log_probs=None,
                                 rollout_is_weights=None,
                                 **global_batch_info):
    """PPO's clipped surrogate, plus: of the tokens PPO did not clip whose covariance lies in (clip_cov_lb,
    clip_cov_ub), clip_cov_ratio of all tokens (at least one), drawn at random, lose their gradient."""
    ratio_of_tokens = policy_loss_option(config, "clip_cov_ratio", 0.0002)
    lower_bound = policy_loss_option(config, "clip_cov_lb", 1.0)
    upper_bound = policy_loss_option(config, "clip_cov_ub", 5.0)
    if ratio_of_tokens <= 0:
        raise ValueError(f"actor.policy_loss.clip_cov_ratio={ratio_of_tokens}: must be larger than 0")
    clip_low, clip_high = clip_range(config)
    negative_approx_kl = log_prob - old_log_prob
    ratio = torch.exp(negative_approx_kl)
    ppo_kl = masked_mean(-negative_approx_kl, response_mask)
    losses1 = -advantages * ratio
    losses2 = -advantages * torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
    valid = response_mask > 0
    clipped_by_ppo = (losses2 > losses1) & valid
    cov = token_covariance(advantages, log_prob, response_mask)
    candidates = torch.nonzero(valid & ~clipped_by_ppo & (cov > lower_bound) & (cov < upper_bound))
    clip_num = max(int(ratio_of_tokens * response_mask.sum().item()), 1)
    chosen = candidates[torch.randperm(len(candidates))[:clip_num]]
    keep = torch.ones_like(advantages)
    keep[chosen[:, 0], chosen[:, 1]] = 0
    pg_clipfrac = masked_mean((keep == 0).float(), response_mask)
    pg_losses = torch.maximum(losses1, losses2) * keep
    pg_losses = pg_losses * truncated_is_weight(old_log_prob, rollout_log_probs, config, rollout_is_weights)
    pg_loss = agg_loss(pg_losses, response_mask, loss_agg_mode, **global_batch_info)
    return pg_loss, pg_clipfrac.detach(), ppo_kl.detach(), zero_metric(pg_loss)


@register_policy_loss("kl_cov")
def compute_policy_loss_kl_cov(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean",
                               config=None, rollout_log_probs=None, rollout_is_weights=None,
        **global_batch_info):
    """The unclipped surrogate -A * ratio, plus ppo_kl_coef * |log ratio| on the kl_cov_ratio of tokens (at
    least one) with the largest covariance. Its ppo_kl is the mean absolute log ratio, as veRL logs it."""
    ratio_of_tokens = policy_loss_option(config, "kl_cov_ratio", 0.0002)
    kl_coef = policy_loss_option(config, "ppo_kl_coef", 0.1)
    if ratio_of_tokens <= 0:
        raise ValueError(f"actor.policy_loss.kl_cov_ratio={ratio_of_tokens}: must be larger than 0")
    negative_approx_kl = log_prob - old_log_prob
    abs_kl = negative_approx_kl.abs()
    ratio = torch.exp(negative_approx_kl)
    ppo_kl_abs = masked_mean(abs_kl, response_mask)
    valid = response_mask > 0
    penalised = torch.zeros_like(valid)
    n_valid = int(valid.sum().item())
    if n_valid > 0:
        valid_adv, valid_logp = advantages.detach()[valid], log_prob.detach()[valid]
        cov = (valid_adv - valid_adv.mean()) * (valid_logp - valid_logp.mean())
        top = torch.topk(cov, max(1, int(n_valid * ratio_of_tokens))).indices
        rows, cols = valid.nonzero(as_tuple=True)  # row-major, the order of advantages[valid]
        penalised[rows[top], cols[top]] = True
    pg_losses = torch.where(penalised, -advantages * ratio + kl_coef * abs_kl, -advantages * ratio)
    pg_losses = pg_losses * truncated_is_weight(old_log_prob, rollout_log_probs, config, rollout_is_weights)
    pg_loss = agg_loss(pg_losses, response_mask, loss_agg_mode, **global_batch_info)
    return pg_loss, zero_metric(pg_loss), ppo_kl_abs.detach(), zero_metric(pg_loss)
