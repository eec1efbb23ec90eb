"""Ratio-based policy losses as veRL computes them: PPO (vanilla), GSPO, CISPO, GPG and GMPO (geo_mean)."""

from __future__ import annotations

import torch

from verlvl.algos.aggregation import agg_loss, row_mean
from verlvl.algos.losses import clip_range, register_policy_loss, truncated_is_weight, zero_metric
from verlvl.algos.masked import masked_mean
from verlvl.algos.options import option


@register_policy_loss("vanilla")
def compute_policy_loss_vanilla(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean",
                                config=None, rollout_log_probs=None, rollout_is_weights=None,
        **global_batch_info):
    """PPO's clipped surrogate with asymmetric clip (clip_ratio_low/high) and dual clip (clip_ratio_c)."""
    clip_low, clip_high = clip_range(config)
    clip_c = option(config, "clip_ratio_c", 3.0)
    negative_approx_kl = torch.clamp(log_prob - old_log_prob, min=-20.0, max=20.0)
    ratio = torch.exp(negative_approx_kl)
    ppo_kl = masked_mean(-negative_approx_kl, response_mask)
    losses1 = -advantages * ratio
    losses2 = -advantages * torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
    clipped = torch.maximum(losses1, losses2)
    pg_clipfrac = masked_mean(torch.gt(losses2, losses1).float(), response_mask)
    losses3 = -advantages * clip_c
    dual = torch.min(losses3, clipped)
    dual_clipped = torch.gt(clipped, losses3) & (advantages < 0)
    pg_clipfrac_lower = masked_mean(dual_clipped.float(), response_mask)
    pg_losses = torch.where(advantages < 0, dual, clipped)
    pg_losses = pg_losses * truncated_is_weight(old_log_prob, rollout_log_probs, config, rollout_is_weights)
    pg_loss = agg_loss(pg_losses, response_mask, loss_agg_mode, **global_batch_info)
    return pg_loss, pg_clipfrac.detach(), ppo_kl.detach(), pg_clipfrac_lower.detach()


@register_policy_loss("gspo")
def compute_policy_loss_gspo(old_log_prob, log_prob, advantages, response_mask,
                             loss_agg_mode="seq-mean-token-mean", config=None, rollout_log_probs=None,
                             rollout_is_weights=None,
                             **global_batch_info):
    """GSPO: one importance ratio per sequence (geometric mean of the token ratios), clipped; always
    aggregated seq-mean-token-mean, whatever loss_agg_mode says (as veRL)."""
    clip = option(config, "clip_ratio", None)  # without any: the GSPO paper's 3e-4 / 4e-4
    clip_low = option(config, "clip_ratio_low", 3e-4 if clip is None else clip)
    clip_high = option(config, "clip_ratio_high", 4e-4 if clip is None else clip)
    negative_approx_kl = log_prob - old_log_prob
    mask = response_mask.to(log_prob.dtype)
    seq_kl = (negative_approx_kl * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    # each token carries the sequence ratio's value and its own gradient: sg[s_i] * pi / sg[pi]
    log_ratio = log_prob - log_prob.detach() + seq_kl.detach().unsqueeze(-1)
    ratio = torch.exp(torch.clamp(log_ratio, max=10.0))
    losses1 = -advantages * ratio
    losses2 = -advantages * torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
    pg_losses = torch.maximum(losses1, losses2)
    pg_losses = pg_losses * truncated_is_weight(old_log_prob, rollout_log_probs, config, rollout_is_weights)
    pg_loss = agg_loss(pg_losses, response_mask, "seq-mean-token-mean", **global_batch_info)
    pg_clipfrac = masked_mean(torch.gt(losses2, losses1).float(), response_mask)
    ppo_kl = masked_mean(-negative_approx_kl, response_mask)
    return pg_loss, pg_clipfrac.detach(), ppo_kl.detach(), zero_metric(pg_loss)


@register_policy_loss("cispo")
def compute_policy_loss_cispo(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean",
                              config=None, rollout_log_probs=None, rollout_is_weights=None,
        **global_batch_info):
    """CISPO: REINFORCE with the importance weight clipped and detached, so every token keeps a gradient."""
    clip_low, clip_high = clip_range(config)
    negative_approx_kl = torch.clamp(log_prob - old_log_prob, min=-20.0, max=20.0)
    ratio = torch.exp(negative_approx_kl)
    clipped_ratio = torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
    pg_losses = -clipped_ratio.detach() * advantages * log_prob
    pg_losses = pg_losses * truncated_is_weight(old_log_prob, rollout_log_probs, config, rollout_is_weights)
    pg_loss = agg_loss(pg_losses, response_mask, loss_agg_mode, **global_batch_info)
    pg_clipfrac = masked_mean((ratio != clipped_ratio).float(), response_mask)
    ppo_kl = masked_mean(-negative_approx_kl, response_mask)
    return pg_loss, pg_clipfrac.detach(), ppo_kl.detach(), zero_metric(pg_loss)


@register_policy_loss("gpg")
def compute_policy_loss_gpg(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean",
                            config=None, rollout_log_probs=None, rollout_is_weights=None,
        **global_batch_info):
    """GPG: plain policy gradient -log_prob * A, no ratio and no clip. veRL reports no metrics for it;
    here nothing is clipped (0) and ppo_kl is still measured."""
    pg_losses = -log_prob * advantages
    pg_losses = pg_losses * truncated_is_weight(old_log_prob, rollout_log_probs, config, rollout_is_weights)
    pg_loss = agg_loss(pg_losses, response_mask, loss_agg_mode, **global_batch_info)
    ppo_kl = masked_mean(old_log_prob - log_prob, response_mask)
    return pg_loss, zero_metric(pg_loss), ppo_kl.detach(), zero_metric(pg_loss)


@register_policy_loss("geo_mean")
def compute_policy_loss_geo_mean(old_log_prob, log_prob, advantages, response_mask,
                                 loss_agg_mode="token-mean", config=None, rollout_log_probs=None,
                                 rollout_is_weights=None,
                                 **global_batch_info):
    """GMPO: the geometric mean of the token ratios, each clipped in log space by the sign of its
    advantage, times the row's mean advantage; the mean over rows (loss_agg_mode is not used, as veRL)."""
    clip_low, clip_high = clip_range(config)
    negative_approx_kl = log_prob - old_log_prob
    ppo_kl = masked_mean(-negative_approx_kl, response_mask)
    sign = torch.sign(advantages)
    clamped = torch.clamp(negative_approx_kl, -clip_low, clip_high)
    pessimistic = sign * torch.min(sign * negative_approx_kl, sign * clamped)
    mask = response_mask.to(log_prob.dtype)
    row_tokens = mask.sum(-1)
    ratio = torch.exp((pessimistic * mask).sum(-1) / (row_tokens + 1e-8))
    advantage = (advantages * mask).sum(-1) / (row_tokens + 1e-8)  # sequence-level advantages only
    pg_losses = -advantage * ratio
    is_weight = truncated_is_weight(old_log_prob, rollout_log_probs, config, rollout_is_weights)
    if isinstance(is_weight, torch.Tensor):  # token weights -> one per row, their geometric mean
        pg_losses = pg_losses * torch.exp((torch.log(is_weight + 1e-10) * mask).sum(-1) / (row_tokens + 1e-8))
    pg_loss = row_mean(pg_losses, response_mask, **global_batch_info)
    clipped = torch.ne(negative_approx_kl, clamped)
    pg_clipfrac = masked_mean((clipped * (advantages > 0)).float(), response_mask)
    pg_clipfrac_lower = masked_mean((clipped * (advantages < 0)).float(), response_mask)
    return pg_loss, pg_clipfrac.detach(), ppo_kl.detach(), pg_clipfrac_lower.detach()
