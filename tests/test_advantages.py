"""Advantage estimators and the extra policy losses on hand-computed examples."""

import numpy as np
import pytest
import torch

from verlvl.trainer.advantages import ADV_ESTIMATORS, get_adv_estimator_fn, register_adv_est
from verlvl.trainer.core_algos import AdaptiveKLController, get_kl_controller, get_policy_loss_fn


def outcome(scores, length=3):
    """Token rewards with each score on the last of `length` valid tokens."""
    rewards = torch.zeros(len(scores), length)
    rewards[:, -1] = torch.tensor(scores)
    return rewards, torch.ones(len(scores), length)


def test_grpo_and_dr_grpo():
    rewards, mask = outcome([1.0, 0.0, 1.0, 1.0])
    index = np.array(["a", "a", "b", "b"], dtype=object)
    adv, _ = get_adv_estimator_fn("grpo")(rewards, mask, index)
    std = torch.tensor([1.0, 0.0]).std()  # group a: scores 1, 0 -> mean .5, std .7071
    assert adv[0, 0].item() == pytest.approx(0.5 / (std.item() + 1e-6))
    assert adv[1, 2].item() == pytest.approx(-0.5 / (std.item() + 1e-6))
    assert torch.equal(adv[2:], torch.zeros(2, 3))  # group b: all equal -> no signal
    dr, _ = get_adv_estimator_fn("grpo")(rewards, mask, index, norm_adv_by_std_in_grpo=False)
    assert dr[0, 0].item() == pytest.approx(0.5) and dr[1, 0].item() == pytest.approx(-0.5)


def test_rloo_leaves_one_out():
    rewards, mask = outcome([3.0, 0.0, 0.0])
    adv, _ = get_adv_estimator_fn("rloo")(rewards, mask, np.array(["a"] * 3, dtype=object))
    assert adv[:, 0].tolist() == pytest.approx([3.0, -1.5, -1.5])  # 3 - mean(0,0); 0 - mean(3,0)


def test_gae_by_hand():
    rewards = torch.tensor([[0.0, 1.0]])
    values = torch.tensor([[0.5, 0.25]])
    mask = torch.ones(1, 2)
    _, returns = get_adv_estimator_fn("gae")(token_level_rewards=rewards, values=values, response_mask=mask,
                                             gamma=0.9, lam=0.8)
    delta1 = 1.0 - 0.25  # last token: r + 0 - V
    delta0 = 0.0 + 0.9 * 0.25 - 0.5
    adv0 = delta0 + 0.9 * 0.8 * delta1
    assert returns[0].tolist() == pytest.approx([adv0 + 0.5, delta1 + 0.25])


def test_reinforce_plus_plus_and_baseline_and_remax():
    rewards, mask = outcome([1.0, 0.0])
    adv, returns = get_adv_estimator_fn("reinforce_plus_plus")(rewards, mask, gamma=1.0)
    assert returns[0].tolist() == [1.0, 1.0, 1.0] and returns[1].tolist() == [0.0, 0.0, 0.0]
    assert adv[0, 0] > 0 > adv[1, 0] and abs(adv.mean().item()) < 1e-6  # whitened
    adv, _ = get_adv_estimator_fn("reinforce_plus_plus_baseline")(rewards, mask, np.array(["a", "a"], dtype=object))
    assert adv[0, 0] > 0 > adv[1, 0]
    adv, _ = get_adv_estimator_fn("remax")(rewards, reward_baselines=torch.tensor([0.5, 0.5]), response_mask=mask)
    assert adv[:, 0].tolist() == [0.5, -0.5]


def test_a_veRL_style_estimator_registers_unchanged():
    @register_adv_est("my_estimator")
    def my_estimator(token_level_rewards, response_mask, index=None, config=None, **kwargs):
        return token_level_rewards * 2, token_level_rewards

    assert "my_estimator" in ADV_ESTIMATORS
    rewards, mask = outcome([1.0])
    assert get_adv_estimator_fn("my_estimator")(rewards, mask)[0][0, -1] == 2.0
    with pytest.raises(ValueError, match="unknown advantage estimator 'nope'"):
        get_adv_estimator_fn("nope")


def test_gspo_uses_one_ratio_per_sequence_and_cispo_keeps_gradients():
    old = torch.zeros(1, 2)
    new = torch.tensor([[0.2, -0.2]], requires_grad=True)  # token ratios e^.2, e^-.2; sequence ratio 1
    adv, mask = torch.ones(1, 2), torch.ones(1, 2)
    loss, clipfrac, _, _ = get_policy_loss_fn("gspo")(old, new, adv, mask, "token-mean", {})
    assert loss.item() == pytest.approx(-1.0) and clipfrac.item() == 0.0
    far = torch.tensor([[2.0, 2.0]], requires_grad=True)  # ratio e^2, far outside any clip
    loss, _, _, _ = get_policy_loss_fn("cispo")(old, far, adv, mask, "token-mean", {"clip_ratio": 0.2})
    loss.backward()
    assert far.grad.abs().sum() > 0  # PPO's clip would have zeroed this gradient
    assert loss.item() == pytest.approx(-(1.2 * 2.0))


def test_kl_controllers():
    assert get_kl_controller({"type": "fixed", "kl_coef": 0.1}).value == 0.1
    ctrl = get_kl_controller({"type": "adaptive", "kl_coef": 0.1, "target_kl": 0.1, "horizon": 100})
    assert isinstance(ctrl, AdaptiveKLController)
    ctrl.update(current_kl=0.2, n_steps=10)  # KL above target: beta grows by 1 + 0.2 * 10 / 100
    assert ctrl.value == pytest.approx(0.1 * 1.02)
