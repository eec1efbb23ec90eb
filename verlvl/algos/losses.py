"""The policy-loss registry (veRL's names and signature), what the losses share, and PPO's value loss."""

from __future__ import annotations

from typing import Callable

import torch

from verlvl.algos.aggregation import agg_loss
from verlvl.algos.compat import ConfigView, accepts, call_accepting
from verlvl.algos.masked import masked_mean
from verlvl.algos.options import option
from verlvl.utils.registry import Registry

POLICY_LOSSES = Registry("policy loss", "actor_rollout_ref.actor.policy_loss")


def register_policy_loss(name: str) -> Callable:
    """veRL's decorator: register fn under `name` (a different function under a taken name is refused).

    Two signatures work. veRL's: fn(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config,
    rollout_is_weights) -> (pg_loss, {"actor/pg_clipfrac": ..., "actor/ppo_kl": ..., other metrics}), where
    config answers config.clip_ratio / config.get(...) and config.global_batch_info goes on to agg_loss.
    verlvl's built-ins, which take **global_batch_info (global_tokens, global_seqs, global_rows, dp_size,
    loss_scale_factor) and rollout_log_probs, and return (pg_loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower).
    The actor calls either through call_policy_loss."""

    return POLICY_LOSSES.register_new(name)


def get_policy_loss_fn(name: str) -> Callable:
    return POLICY_LOSSES.lookup(name)


VERL_METRICS = ("actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_clipfrac_lower")


def call_policy_loss(fn: Callable, old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config,
                     rollout_log_probs=None, rollout_is_weights=None, **global_batch_info):
    """Call a registered policy loss of either signature (see register_policy_loss); returns
    (pg_loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower, other_metrics) with the three as detached tensors.
    A veRL-signature loss receives truncated IS weights (actor.tis_imp_ratio_cap) as rollout_is_weights."""
    names, var_kw = accepts(fn)
    info = dict(global_batch_info)  # veRL's names as well, for losses that read them
    info.setdefault("batch_num_tokens", info.get("global_tokens"))
    info.setdefault("global_batch_size", info.get("global_seqs"))
    view = ConfigView(config, global_batch_info=info)
    if var_kw:  # verlvl's form
        out = fn(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, view,
                 rollout_log_probs=rollout_log_probs, rollout_is_weights=rollout_is_weights, **global_batch_info)
    else:
        if rollout_is_weights is None:
            weight = truncated_is_weight(old_log_prob, rollout_log_probs, config)
            rollout_is_weights = weight if isinstance(weight, torch.Tensor) else None
        out = call_accepting(fn, old_log_prob=old_log_prob, log_prob=log_prob, advantages=advantages,
                             response_mask=response_mask, loss_agg_mode=loss_agg_mode, config=view,
                             rollout_is_weights=rollout_is_weights, rollout_log_probs=rollout_log_probs)
    if len(out) == 4:
        return (*out, {})
    if len(out) != 2 or not isinstance(out[1], dict):
        raise ValueError(f"policy loss {fn.__module__}.{fn.__qualname__} returned {len(out)} values; expected "
                         "(pg_loss, metrics dict) as in veRL, or verlvl's (pg_loss, clipfrac, ppo_kl, clipfrac_lower)")
    pg_loss, metrics = out
    known = [torch.as_tensor(float(metrics.get(k, 0.0)), device=pg_loss.device) for k in VERL_METRICS]
    return (pg_loss, *known, {k: float(v) for k, v in metrics.items() if k not in VERL_METRICS})


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
