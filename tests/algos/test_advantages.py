"""The estimator registry and the per-token estimators (GAE, REINFORCE++, ReMax) on hand-computed examples."""

import numpy as np
import pytest
import torch

from verlvl.algos import ADV_ESTIMATORS, get_adv_estimator_fn, register_adv_est


def outcome(scores, length=3):
    """Token rewards with each score on the last of `length` valid tokens."""
    rewards = torch.zeros(len(scores), length)
    rewards[:, -1] = torch.tensor(scores)
    return rewards, torch.ones(len(scores), length)


def gae(rewards, values, mask, gamma=0.9, lam=0.8):
    estimator = get_adv_estimator_fn("gae")
    return estimator(token_level_rewards=rewards, values=values, response_mask=mask, gamma=gamma, lam=lam)


def test_gae_by_hand():
    rewards = torch.tensor([[0.0, 1.0]])
    values = torch.tensor([[0.5, 0.25]])
    _, returns = gae(rewards, values, torch.ones(1, 2))
    delta1 = 1.0 - 0.25  # last token: r + 0 - V
    delta0 = 0.0 + 0.9 * 0.25 - 0.5
    adv0 = delta0 + 0.9 * 0.8 * delta1
    assert returns[0].tolist() == pytest.approx([adv0 + 0.5, delta1 + 0.25])


def test_gae_carries_the_next_value_and_advantage_across_a_masked_token():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 9.0, 0.25]])  # token 1 is a tool's output: its value must not be used
    mask = torch.tensor([[1.0, 0.0, 1.0]])
    advantages, returns = gae(rewards, values, mask)
    adv2 = 1.0 - 0.25
    adv0 = (0.0 + 0.9 * 0.25 - 0.5) + 0.9 * 0.8 * adv2  # V(t=2) and A(t=2) carried over the hole: 0.265
    assert returns[0].tolist() == pytest.approx([adv0 + 0.5, adv2 + 9.0, adv2 + 0.25])
    # whitened over the two real tokens (0.265, 0.75): -1/sqrt(2), +1/sqrt(2); 0 on the hole
    assert advantages[0].tolist() == pytest.approx([-2 ** -0.5, 0.0, 2 ** -0.5], abs=1e-4)


def test_gae_ends_at_the_mask_end():
    rewards = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    values = torch.tensor([[0.5, 7.0, 7.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    _, returns = gae(rewards, values, mask)
    assert returns[0, 0].item() == pytest.approx(1.0)  # r - V + V: the padding carries nothing back


def test_reinforce_plus_plus_and_remax():
    rewards, mask = outcome([1.0, 0.0])
    adv, returns = get_adv_estimator_fn("reinforce_plus_plus")(rewards, mask, gamma=1.0)
    assert returns[0].tolist() == [1.0, 1.0, 1.0] and returns[1].tolist() == [0.0, 0.0, 0.0]
    assert adv[0, 0] > 0 > adv[1, 0] and abs(adv.mean().item()) < 1e-6  # whitened
    adv, returns = get_adv_estimator_fn("reinforce_plus_plus")(rewards, mask, gamma=0.5)
    assert returns[0].tolist() == [0.25, 0.5, 1.0]
    baselines = torch.tensor([0.5, 0.5])
    adv, _ = get_adv_estimator_fn("remax")(rewards, reward_baselines=baselines, response_mask=mask)
    assert adv[:, 0].tolist() == [0.5, -0.5]


def test_every_estimator_takes_the_trainers_keywords():
    rewards, mask = outcome([1.0, 0.0, 2.0, 1.0])
    kwargs = {"token_level_rewards": rewards, "response_mask": mask,
              "index": np.array(["a", "a", "b", "b"], dtype=object), "gamma": 1.0, "lam": 1.0,
              "config": {"norm_adv_by_std_in_grpo": True}, "norm_adv_by_std_in_grpo": True,
              "values": torch.zeros(4, 3), "reward_baselines": torch.zeros(4)}
    for name in sorted(ADV_ESTIMATORS):
        advantages, returns = get_adv_estimator_fn(name)(**kwargs)
        assert advantages.shape == returns.shape == (4, 3), name


def test_a_veRL_style_estimator_registers_unchanged():
    @register_adv_est("my_estimator")
    def my_estimator(token_level_rewards, response_mask, index=None, config=None, **kwargs):
        return token_level_rewards * 2, token_level_rewards

    assert "my_estimator" in ADV_ESTIMATORS
    rewards, mask = outcome([1.0])
    assert get_adv_estimator_fn("my_estimator")(rewards, mask)[0][0, -1] == 2.0
    with pytest.raises(ValueError, match="unknown advantage estimator 'nope'"):
        get_adv_estimator_fn("nope")
    del ADV_ESTIMATORS["my_estimator"]
