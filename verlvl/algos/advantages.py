"""The advantage-estimator registry (veRL's names and signatures) and the per-token return estimators:
GAE, REINFORCE++ and ReMax. The group-baseline estimators are in group_advantages.py."""

from __future__ import annotations

from typing import Callable

import torch

from verlvl.algos.masked import masked_whiten
from verlvl.utils.registry import Registry

ADV_ESTIMATORS = Registry("advantage estimator", "algorithm.adv_estimator")


def register_adv_est(name: str) -> Callable:
    """Register fn(token_level_rewards, response_mask, index=None, config=None, **kwargs)
    -> (advantages, returns). The trainer calls it with keyword arguments: token_level_rewards,
    response_mask, index, gamma, lam, config, norm_adv_by_std_in_grpo, and values / reward_baselines
    when it has them."""
    return ADV_ESTIMATORS.register(name)


def get_adv_estimator_fn(name: str) -> Callable:
    return ADV_ESTIMATORS.lookup(name)


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
