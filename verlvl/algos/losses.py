"""The policy-loss registry (veRL's names and signature), what the losses share, and PPO's value loss."""

from __future__ import annotations

from typing import Callable

import torch

from verlvl.algos.aggregation import agg_loss
from verlvl.algos.masked import masked_mean
from verlvl.algos.options import option
from verlvl.utils.registry import Registry

POLICY_LOSSES = Registry("policy loss", "actor_rollout_ref.actor.policy_loss")


def register_policy_loss(name: str) -> Callable:
    """Register fn(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config,
    rollout_log_probs=None, rollout_is_weights=None, **global_batch_info) -> (pg_loss, pg_clipfrac, ppo_kl,
    pg_clipfrac_lower), the metrics as detached tensors; global_batch_info (global_tokens, global_seqs, global_rows, dp_size,
    loss_scale_factor) goes on to agg_loss."""
    return POLICY_LOSSES.register(name)


def get_policy_loss_fn(name: str) -> Callable:
    return POLICY_LOSSES.lookup(name)


def policy_loss_option(config, key: str, default):
    """A key of veRL's actor.policy_loss sub-config (clip_cov_ratio, kl_cov_ratio, ...): read there when
    policy_loss is a mapping or object, else from the actor config itself, else `default`."""
    nested = option(config, "policy_loss", None)
    if nested is not None and not isinstance(nested, str):
        return option(nested, key, default)
    return option(config, key, default)


def clip_range(config, default: float = 0.2) -> tuple[float, float]:
    """(clip_ratio_low, clip_ratio_high), each falling back to clip_ratio."""
    clip = option(config, "clip_ratio", default)
    return option(config, "clip_ratio_low", clip), option(config, "clip_ratio_high", clip)


def truncated_is_weight(old_log_prob, rollout_log_probs, config,
                        rollout_is_weights=None) -> torch.Tensor | float:
    """Truncated importance sampling (TIS): min(pi_old / pi_rollout, cap) per token, which corrects for
    the rollout engine sampling from slightly different probabilities than the trainer computes
    (actor.tis_imp_ratio_cap > 0 turns it on; 1.0 when off or without rollout log-probs). Weights the
    trainer computed (algorithm.rollout_correction, token or sequence level) take precedence."""
    if rollout_is_weights is not None:
        return rollout_is_weights.detach()
    cap = option(config, "tis_imp_ratio_cap", -1.0)
    if cap <= 0 or rollout_log_probs is None:
        return 1.0
    return torch.exp(torch.clamp(old_log_prob - rollout_log_probs, -20.0, 20.0)).clamp(max=cap).detach()


def zero_metric(like: torch.Tensor) -> torch.Tensor:
    return torch.zeros((), device=like.device)


def clipped_value_loss(vpreds, returns, values, response_mask, cliprange_value: float,
                       loss_agg_mode="token-mean", **global_batch_info):
    """PPO's clipped value loss (veRL's compute_value_loss); returns (loss, clipfrac)."""
    clipped = values + (vpreds - values).clamp(-cliprange_value, cliprange_value)
    losses = torch.maximum((vpreds - returns).square(), (clipped - returns).square())
    loss = 0.5 * agg_loss(losses, response_mask, loss_agg_mode, **global_batch_info)
    clipped_larger = torch.gt((clipped - returns).square(), (vpreds - returns).square())
    clipfrac = masked_mean(clipped_larger.float(), response_mask)
    return loss, clipfrac
