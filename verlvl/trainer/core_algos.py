"""Loss pieces with veRL's names and signatures: policy losses (a registry), KL penalties, loss aggregation."""

from __future__ import annotations

from typing import Callable

import torch

from verlvl.utils.registry import Registry

POLICY_LOSSES = Registry("policy loss", "actor_rollout_ref.actor.policy_loss")
LOSS_AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def register_policy_loss(name: str):
    """Register fn(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config, rollout_log_probs=None)
    -> (pg_loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower), as veRL's registry does."""
    return POLICY_LOSSES.register(name)


def get_policy_loss_fn(name: str) -> Callable:
    return POLICY_LOSSES.lookup(name)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1)


def agg_loss(loss_mat: torch.Tensor, loss_mask: torch.Tensor, loss_agg_mode: str, global_tokens: float | None = None,
             global_seqs: float | None = None, dp_size: int = 1) -> torch.Tensor:
    """Aggregate a (B, T) token loss. With `global_tokens` / `global_seqs` (the counts over the whole
    mini-batch on all data-parallel ranks) the result is this micro-batch's share, scaled by dp_size so
    that summing over micro-batches and averaging gradients over ranks gives exactly the loss of the
    whole mini-batch computed in one place, however rows are split."""
    mask = loss_mask.to(loss_mat.dtype)
    if loss_agg_mode == "token-mean":
        denom = global_tokens if global_tokens is not None else mask.sum().clamp(min=1)
        return (loss_mat * mask).sum() / denom * dp_size
    seq_denom = global_seqs if global_seqs is not None else loss_mat.shape[0]
    if loss_agg_mode == "seq-mean-token-sum":
        per_seq = (loss_mat * mask).sum(-1)
    elif loss_agg_mode == "seq-mean-token-mean":
        per_seq = (loss_mat * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    elif loss_agg_mode == "seq-mean-token-sum-norm":  # Dr.GRPO: a constant normaliser, the response budget
        per_seq = (loss_mat * mask).sum(-1) / loss_mat.shape[-1]
    else:
        raise ValueError(f"unknown loss_agg_mode {loss_agg_mode!r}; use one of {LOSS_AGG_MODES}")
    return per_seq.sum() / seq_denom * dp_size


def truncated_is_weight(old_log_prob, rollout_log_probs, config) -> torch.Tensor | float:
    """Truncated importance sampling (TIS): min(pi_old / pi_rollout, cap) per token, which corrects for
    the rollout engine sampling from slightly different probabilities than the trainer computes
    (actor.tis_imp_ratio_cap > 0 turns it on; 1.0 when off or without rollout log-probs)."""
    cap = _cfg(config, "tis_imp_ratio_cap", -1.0)
    if cap <= 0 or rollout_log_probs is None:
        return 1.0
    return torch.exp(torch.clamp(old_log_prob - rollout_log_probs, -20.0, 20.0)).clamp(max=cap).detach()


@register_policy_loss("vanilla")
def compute_policy_loss_vanilla(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean",
                                config=None, rollout_log_probs=None, **agg_kwargs):
    """PPO's clipped surrogate with asymmetric clip (clip_ratio_low/high) and dual clip (clip_ratio_c)."""
    clip_low = _cfg(config, "clip_ratio_low", _cfg(config, "clip_ratio", 0.2))
    clip_high = _cfg(config, "clip_ratio_high", _cfg(config, "clip_ratio", 0.2))
    clip_c = _cfg(config, "clip_ratio_c", 3.0)
    negative_approx_kl = torch.clamp(log_prob - old_log_prob, min=-20.0, max=20.0)
    ratio = torch.exp(negative_approx_kl)
    ppo_kl = masked_mean(-negative_approx_kl, response_mask)
    losses1 = -advantages * ratio
    losses2 = -advantages * torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
    clipped = torch.maximum(losses1, losses2)
    pg_clipfrac = masked_mean(torch.gt(losses2, losses1).float(), response_mask)
    losses3 = -advantages * clip_c
    dual = torch.min(losses3, clipped)
    pg_clipfrac_lower = masked_mean(torch.gt(clipped, losses3).float() * (advantages < 0).float(), response_mask)
    pg_losses = torch.where(advantages < 0, dual, clipped)
    pg_losses = pg_losses * truncated_is_weight(old_log_prob, rollout_log_probs, config)
    pg_loss = agg_loss(pg_losses, response_mask, loss_agg_mode, **agg_kwargs)
    return pg_loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower


def kl_penalty(logprob: torch.Tensor, ref_logprob: torch.Tensor, kl_penalty: str = "low_var_kl") -> torch.Tensor:
    """Per-token KL estimate between policy and reference: kl (k1), abs, mse (k2), low_var_kl (k3)."""
    diff = logprob - ref_logprob
    if kl_penalty in ("kl", "k1"):
        return diff
    if kl_penalty == "abs":
        return diff.abs()
    if kl_penalty in ("mse", "k2"):
        return 0.5 * diff.square()
    if kl_penalty in ("low_var_kl", "k3"):
        kl = torch.clamp(-diff, min=-20, max=20)
        return torch.clamp(torch.exp(kl) - kl - 1, min=-10, max=10)
    raise ValueError(f"unknown kl penalty {kl_penalty!r}; use kl, abs, mse or low_var_kl")


def clipped_value_loss(vpreds, returns, values, response_mask, cliprange_value: float, loss_agg_mode="token-mean",
                       **agg_kwargs):
    """PPO's clipped value loss; returns (loss, clipfrac)."""
    clipped = values + (vpreds - values).clamp(-cliprange_value, cliprange_value)
    losses = torch.maximum((vpreds - returns).square(), (clipped - returns).square())
    loss = 0.5 * agg_loss(losses, response_mask, loss_agg_mode, **agg_kwargs)
    clipfrac = masked_mean(torch.gt((clipped - returns).square(), (vpreds - returns).square()).float(), response_mask)
    return loss, clipfrac


def _cfg(config, key, default):
    if config is None:
        return default
    value = config.get(key, None) if isinstance(config, dict) else getattr(config, key, None)
    return default if value is None else value


@register_policy_loss("gspo")
def compute_policy_loss_gspo(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="seq-mean-token-mean",
                             config=None, rollout_log_probs=None, **agg_kwargs):
    """GSPO: one importance ratio per sequence (geometric mean of the token ratios), clipped."""
    clip_low = _cfg(config, "clip_ratio_low", _cfg(config, "clip_ratio", 3e-4))
    clip_high = _cfg(config, "clip_ratio_high", _cfg(config, "clip_ratio", 4e-4))
    mask = response_mask.to(log_prob.dtype)
    seq_kl = ((log_prob - old_log_prob) * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    # token-level value with the sequence ratio's value and the token's gradient
    log_ratio = log_prob - log_prob.detach() + seq_kl.detach().unsqueeze(-1)
    ratio = torch.exp(torch.clamp(log_ratio, max=10.0))
    losses1 = -advantages * ratio
    losses2 = -advantages * torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
    pg_losses = torch.maximum(losses1, losses2)
    pg_clipfrac = masked_mean(torch.gt(losses2, losses1).float(), response_mask)
    pg_loss = agg_loss(pg_losses, response_mask, loss_agg_mode, **agg_kwargs)
    return pg_loss, pg_clipfrac, masked_mean(-(log_prob - old_log_prob), response_mask), torch.tensor(0.0)


@register_policy_loss("cispo")
def compute_policy_loss_cispo(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean",
                              config=None, rollout_log_probs=None, **agg_kwargs):
    """CISPO: REINFORCE with the importance weight clipped and detached, so every token keeps a gradient."""
    clip_low = _cfg(config, "clip_ratio_low", _cfg(config, "clip_ratio", 0.2))
    clip_high = _cfg(config, "clip_ratio_high", _cfg(config, "clip_ratio", 0.2))
    ratio = torch.exp(torch.clamp(log_prob - old_log_prob, -20.0, 20.0))
    weight = torch.clamp(ratio, 1 - clip_low, 1 + clip_high).detach()
    pg_losses = -advantages * weight * log_prob * truncated_is_weight(old_log_prob, rollout_log_probs, config)
    pg_clipfrac = masked_mean((ratio != torch.clamp(ratio, 1 - clip_low, 1 + clip_high)).float(), response_mask)
    pg_loss = agg_loss(pg_losses, response_mask, loss_agg_mode, **agg_kwargs)
    return pg_loss, pg_clipfrac, masked_mean(-(log_prob - old_log_prob), response_mask), torch.tensor(0.0)


class FixedKLController:
    """A constant KL coefficient (algorithm.kl_ctrl.type=fixed)."""

    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        pass


class AdaptiveKLController:
    """The KL coefficient moves toward target_kl over `horizon` samples (Ziegler et al.)."""

    def __init__(self, init_kl_coef: float, target_kl: float, horizon: int):
        self.value, self.target, self.horizon = init_kl_coef, target_kl, horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        error = max(-0.2, min(0.2, current_kl / self.target - 1))
        self.value *= 1 + error * n_steps / self.horizon


def get_kl_controller(kl_ctrl) -> FixedKLController | AdaptiveKLController:
    kind = _cfg(kl_ctrl, "type", "fixed")
    if kind == "fixed":
        return FixedKLController(_cfg(kl_ctrl, "kl_coef", 0.001))
    if kind == "adaptive":
        return AdaptiveKLController(_cfg(kl_ctrl, "kl_coef", 0.001), _cfg(kl_ctrl, "target_kl", 0.1),
                                    _cfg(kl_ctrl, "horizon", 10000))
    raise ValueError(f"algorithm.kl_ctrl.type={kind!r}: use fixed or adaptive")
