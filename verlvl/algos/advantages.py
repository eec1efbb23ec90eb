"""The advantage-estimator registry (veRL's names and signatures) and the per-token return estimators:
GAE, REINFORCE++ and ReMax. The group-baseline estimators are in group_advantages.py."""

from __future__ import annotations

from typing import Callable

import torch

from verlvl.algos.compat import AdvantageEstimator, call_accepting, registry_name
from verlvl.algos.masked import masked_whiten
from verlvl.utils.registry import Registry

ADV_ESTIMATORS = Registry("advantage estimator", "algorithm.adv_estimator")


def register_adv_est(name_or_enum: str | AdvantageEstimator) -> Callable:
    """veRL's decorator: register fn under a name or an AdvantageEstimator member (a different function
    under a taken name is refused). fn(token_level_rewards, response_mask, index=None, config=None, ...)
    -> (advantages, returns). The trainer offers token_level_rewards, response_mask, index (uid), gamma,
    lam, config (algorithm.*, read as config.x or config.get("x")), norm_adv_by_std_in_grpo, and values /
    reward_baselines when it has them; fn receives those it declares (all of them with **kwargs)."""
    name = registry_name(name_or_enum)

    return ADV_ESTIMATORS.register_new(name)


def get_adv_estimator_fn(name_or_enum: str | AdvantageEstimator) -> Callable:
    return ADV_ESTIMATORS.lookup(registry_name(name_or_enum))


def compute_advantage(name_or_enum: str | AdvantageEstimator, **kwargs):
    """The registered estimator called with the keywords it declares (call_accepting)."""
    return call_accepting(get_adv_estimator_fn(name_or_enum), **kwargs)


@register_adv_est("gae")
def compute_gae_advantage_return(token_level_rewards, values, response_mask, gamma=1.0, lam=1.0, **kwargs):
    """Generalised advantage estimation, whitened over the batch. A masked token inside a response (a tool's
    output, a hole) is not a step: the next value and the running advantage carry across it, as in veRL.
    Advantages are 0 on masked tokens; returns = the raw advantages + values everywhere."""
    with torch.no_grad():
        mask = response_mask.to(values.dtype)
        next_value = torch.zeros_like(values[:, 0])
        running = torch.zeros_like(values[:, 0])
        advantages = torch.zeros_like(values)
        for t in reversed(range(token_level_rewards.shape[-1])):
            delta = token_level_rewards[:, t] + gamma * next_value - values[:, t]
            step = delta + gamma * lam * running
            m = mask[:, t]
            next_value = values[:, t] * m + (1 - m) * next_value
            running = step * m + (1 - m) * running
            advantages[:, t] = running
        returns = advantages + values
        return masked_whiten(advantages, response_mask) * response_mask, returns


@register_adv_est("reinforce_plus_plus")
def compute_reinforce_plus_plus_outcome_advantage(token_level_rewards, response_mask, gamma: float = 1.0,
                                                  **kwargs):
    """Discounted returns of the token rewards (reset where the mask ends), whitened over the batch."""
    with torch.no_grad():
        returns = torch.zeros_like(token_level_rewards)
        running = torch.zeros_like(token_level_rewards[:, 0])
        for t in reversed(range(token_level_rewards.shape[1])):
            running = token_level_rewards[:, t] + gamma * running
            returns[:, t] = running
            running = running * response_mask[:, t]
        advantages = masked_whiten(returns, response_mask) * response_mask
    return advantages, returns


@register_adv_est("remax")
def compute_remax_outcome_advantage(token_level_rewards, reward_baselines, response_mask, **kwargs):
    """Score minus the score of the greedy response to the same prompt, on every token (ReMax)."""
    with torch.no_grad():
        returns = (token_level_rewards * response_mask).flip(-1).cumsum(-1).flip(-1)
        advantages = (returns - reward_baselines.unsqueeze(-1)) * response_mask
    return advantages, returns
