"""Advantage estimators in a registry with veRL's names and signatures (gae, grpo, rloo, reinforce++, remax)."""

from __future__ import annotations

from collections import defaultdict
from typing import Callable

import numpy as np
import torch

from verlvl.trainer.core_algos import masked_mean
from verlvl.utils.registry import Registry

ADV_ESTIMATORS = Registry("advantage estimator", "algorithm.adv_estimator")


def register_adv_est(name: str) -> Callable:
    """Register fn(token_level_rewards, response_mask, index=None, config=None, **kw) -> (advantages, returns)."""
    return ADV_ESTIMATORS.register(name)


def get_adv_estimator_fn(name: str) -> Callable:
    return ADV_ESTIMATORS.lookup(name)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean).square(), mask)
    var = var * mask.sum() / (mask.sum() - 1).clamp(min=1)  # unbiased, as veRL
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    return whitened if shift_mean else whitened + mean


def _groups(index) -> dict:
    groups = defaultdict(list)
    for i, uid in enumerate(np.asarray(index, dtype=object).tolist()):
        groups[uid].append(i)
    return groups


@register_adv_est("gae")
def compute_gae_advantage_return(token_level_rewards, values, response_mask, gamma=1.0, lam=1.0, **kwargs):
    """Generalised advantage estimation over the response tokens; advantages whitened over the batch."""
    with torch.no_grad():
        last, advantages = 0.0, []
        length = token_level_rewards.shape[-1]
        for t in reversed(range(length)):
            next_value = values[:, t + 1] if t < length - 1 else 0.0
            delta = token_level_rewards[:, t] + gamma * next_value - values[:, t]
            last = delta + gamma * lam * last
            advantages.append(last)
        advantages = torch.stack(advantages[::-1], dim=1)
        returns = advantages + values
        return masked_whiten(advantages, response_mask) * response_mask, returns


@register_adv_est("grpo")
def compute_grpo_outcome_advantage(token_level_rewards, response_mask, index, epsilon: float = 1e-6,
                                   norm_adv_by_std_in_grpo: bool = True, **kwargs):
    """(score - group mean) / (group std + eps) for each prompt's group of samples; without the
    std normalisation (norm_adv_by_std_in_grpo=false) this is Dr.GRPO."""
    scores = token_level_rewards.sum(-1)
    with torch.no_grad():
        out = torch.zeros_like(scores)
        for rows in _groups(index).values():
            group = scores[rows]
            mean = group.mean()
            std = group.std() if len(rows) > 1 else torch.tensor(1.0)
            mean = mean if len(rows) > 1 else torch.tensor(0.0)
            out[rows] = (group - mean) / (std + epsilon) if norm_adv_by_std_in_grpo else group - mean
        advantages = out.unsqueeze(-1) * response_mask
    return advantages, advantages


@register_adv_est("rloo")
def compute_rloo_outcome_advantage(token_level_rewards, response_mask, index, epsilon: float = 1e-6, **kwargs):
    """Each sample's score minus the mean of the other samples of its prompt (leave one out)."""
    scores = token_level_rewards.sum(-1)
    with torch.no_grad():
        out = torch.zeros_like(scores)
        for rows in _groups(index).values():
            group = scores[rows]
            n = len(rows)
            out[rows] = group * n / (n - 1) - group.mean() * n / (n - 1) if n > 1 else group
        advantages = out.unsqueeze(-1) * response_mask
    return advantages, advantages


@register_adv_est("reinforce_plus_plus")
def compute_reinforce_plus_plus_outcome_advantage(token_level_rewards, response_mask, gamma: float = 1.0, **kwargs):
    """Discounted returns of the token rewards, whitened over the batch."""
    with torch.no_grad():
        returns = torch.zeros_like(token_level_rewards)
        running = torch.zeros(token_level_rewards.shape[0])
        for t in reversed(range(token_level_rewards.shape[1])):
            running = token_level_rewards[:, t] + gamma * running
            returns[:, t] = running
            running = running * response_mask[:, t]
        advantages = masked_whiten(returns, response_mask) * response_mask
    return advantages, returns


@register_adv_est("reinforce_plus_plus_baseline")
def compute_reinforce_plus_plus_baseline_outcome_advantage(token_level_rewards, response_mask, index,
                                                           epsilon: float = 1e-6, **kwargs):
    """Score minus its prompt's group mean, broadcast over tokens, then whitened over the batch."""
    scores = token_level_rewards.sum(-1)
    with torch.no_grad():
        centred = torch.zeros_like(scores)
        for rows in _groups(index).values():
            centred[rows] = scores[rows] - (scores[rows].mean() if len(rows) > 1 else 0.0)
        broadcast = centred.unsqueeze(-1) * response_mask
        advantages = masked_whiten(broadcast, response_mask) * response_mask
    return advantages, advantages


@register_adv_est("remax")
def compute_remax_outcome_advantage(token_level_rewards, reward_baselines, response_mask, **kwargs):
    """Score minus the score of the greedy response to the same prompt, on every token (ReMax)."""
    with torch.no_grad():
        returns = (token_level_rewards * response_mask).flip(-1).cumsum(-1).flip(-1)
        advantages = (returns - reward_baselines.unsqueeze(-1)) * response_mask
    return advantages, returns
