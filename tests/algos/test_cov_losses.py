"""Clip-Cov and KL-Cov as veRL computes them, on hand-computed examples."""

import math

import pytest
import torch

from verlvl.algos import get_policy_loss_fn

# log_prob - mean = 1.5, 0.5, -0.5, -1.5 and advantage - mean = 3, 1, -1, -3: covariances 4.5, 0.5, 0.5, 4.5
LOG_PROB = torch.tensor([[-1.0, -2.0, -3.0, -4.0]])
ADV = torch.tensor([[3.0, 1.0, -1.0, -3.0]])
MASK = torch.ones(1, 4)


def clip_cov(config, log_prob=LOG_PROB, adv=ADV, mask=MASK):
    new = log_prob.clone().requires_grad_()
    loss, clipfrac, ppo_kl, _ = get_policy_loss_fn("clip_cov")(log_prob.clone(), new, adv, mask, "token-mean",
                                                               config)
    loss.backward()
    return loss, clipfrac, ppo_kl, new.grad


def test_clip_cov_drops_the_gradient_of_high_covariance_tokens():
    # ratio 1 everywhere, so PPO clips nothing; tokens 0 and 3 lie in (lb=1, ub=5); 0.5 of 4 tokens: 2
    loss, clipfrac, ppo_kl, grad = clip_cov({"clip_ratio": 0.2, "policy_loss": {"clip_cov_ratio": 0.5}})
    assert grad[0].tolist() == pytest.approx([0.0, -1 / 4, 1 / 4, 0.0])  # d(-A ratio)/dlogp / 4 tokens
    assert loss.item() == pytest.approx((0.0 - 1.0 + 1.0 + 0.0) / 4)
    assert clipfrac.item() == 0.5 and ppo_kl.item() == 0.0


def test_clip_cov_draws_at_least_one_token_at_random_among_the_candidates():
    _, clipfrac, _, grad = clip_cov({"clip_ratio": 0.2})  # veRL's default ratio 0.0002: 1 token of 4
    assert clipfrac.item() == 0.25
    dropped = (grad == 0).flatten().nonzero().flatten().tolist()
    assert dropped in ([0], [3])


def test_clip_cov_bounds_and_ppos_own_clip_exclude_tokens():
    config = {"clip_ratio": 0.2, "policy_loss": {"clip_cov_ratio": 0.5, "clip_cov_ub": 4.0}}
    _, clipfrac, _, grad = clip_cov(config)
    assert clipfrac.item() == 0.0 and (grad != 0).all()  # 4.5 is above ub
    old = LOG_PROB.clone()
    old[0, 0] -= 1.0  # token 0's ratio e > 1.2 with A > 0: PPO clips it, so Clip-Cov leaves it alone
    new = LOG_PROB.clone().requires_grad_()
    config = {"clip_ratio": 0.2, "policy_loss": {"clip_cov_ratio": 0.5}}
    loss, clipfrac, _, _ = get_policy_loss_fn("clip_cov")(old, new, ADV, MASK, "token-mean", config)
    assert clipfrac.item() == 0.25  # only token 3
    assert loss.item() == pytest.approx((-3 * 1.2 - 1.0 + 1.0 + 0.0) / 4)


def test_kl_cov_penalises_the_largest_covariance_tokens():
    adv = torch.tensor([[3.0, 1.0, -1.0, -4.0]])  # covariances 4.875, 0.625, 0.375, 5.625: token 3 largest
    old = LOG_PROB - 0.1  # log ratio 0.1 everywhere
    new = LOG_PROB.clone().requires_grad_()
    fn = get_policy_loss_fn("kl_cov")
    surrogate = -(3 + 1 - 1 - 4) * math.exp(0.1)  # sum of -A * ratio
    loss, clipfrac, ppo_kl, _ = fn(old, new, adv, MASK, "token-mean", {"policy_loss": {"kl_cov_ratio": 0.25}})
    assert loss.item() == pytest.approx((surrogate + 0.1 * 0.1) / 4)  # veRL's default ppo_kl_coef 0.1
    assert ppo_kl.item() == pytest.approx(0.1) and clipfrac.item() == 0.0  # veRL logs the mean |log ratio|
    config = {"policy_loss": {"kl_cov_ratio": 0.5, "ppo_kl_coef": 1.0}}
    loss, _, _, _ = fn(old, new, adv, MASK, "token-mean", config)
    assert loss.item() == pytest.approx((surrogate + 2 * 0.1) / 4)  # tokens 3 and 0


def test_kl_cov_ignores_masked_tokens():
    adv = torch.tensor([[3.0, 1.0, -2.0, -100.0]])
    mask = torch.tensor([[1, 1, 1, 0]])  # counted, the masked token would have the largest covariance
    old = LOG_PROB - 0.1
    loss, _, _, _ = get_policy_loss_fn("kl_cov")(old, LOG_PROB, adv, mask, "token-mean",
                                                 {"policy_loss": {"kl_cov_ratio": 0.2}})
    # over tokens 0..2: advantage - 2/3 = 7/3, 1/3, -8/3; log_prob + 2 = 1, 0, -1: token 2 (8/3) largest
    assert loss.item() == pytest.approx((-(3 + 1 - 2) * math.exp(0.1) + 0.1 * 0.1) / 3)
