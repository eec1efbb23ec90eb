"""KL estimators, the KL-in-reward metric and the KL controllers, by hand."""

import math

import pytest
import torch

from verlvl.algos import AdaptiveKLController, get_kl_controller, kl_in_reward_metric, kl_penalty


def test_kl_estimators_by_hand():
    lp, ref = torch.tensor([0.0]), torch.tensor([math.log(0.5)])
    d = math.log(2)
    assert kl_penalty(lp, ref, "kl").item() == pytest.approx(d)
    assert kl_penalty(lp, ref, "abs").item() == pytest.approx(d)
    assert kl_penalty(lp, ref, "mse").item() == pytest.approx(0.5 * d * d)
    assert kl_penalty(lp, ref, "low_var_kl").item() == pytest.approx(0.5 - math.log(0.5) - 1)
    with pytest.raises(ValueError, match="unknown kl penalty"):
        kl_penalty(lp, ref, "nope")


def test_plus_keeps_the_value_and_takes_k2s_gradient():
    lp = torch.tensor([0.0, -1.0], requires_grad=True)
    ref = torch.tensor([math.log(0.5), -0.5])
    value = kl_penalty(lp, ref, "k3+")
    assert value.tolist() == pytest.approx(kl_penalty(lp, ref, "k3").tolist())
    value.sum().backward()
    assert lp.grad.tolist() == pytest.approx((lp - ref).tolist())  # d/dlp of 0.5 (lp - ref)^2


def test_kl_in_reward_metric_is_the_mean_of_row_means():
    kld = torch.tensor([[1.0, 1.0, 0.0], [4.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]])
    # rows: 1, 4 and an empty row counted as 0 -> 5 / 3 (a token mean would be 6 / 3)
    assert kl_in_reward_metric(kld, mask).item() == pytest.approx(5 / 3)


def test_kl_controllers():
    assert get_kl_controller({"type": "fixed", "kl_coef": 0.1}).value == 0.1
    ctrl = get_kl_controller({"type": "adaptive", "kl_coef": 0.1, "target_kl": 0.1, "horizon": 100})
    assert isinstance(ctrl, AdaptiveKLController)
    ctrl.update(current_kl=0.2, n_steps=10)  # KL above target: beta grows by 1 + 0.2 * 10 / 100
    assert ctrl.value == pytest.approx(0.1 * 1.02)
    ctrl.update(current_kl=10.0, n_steps=10)  # the error is clipped at 0.2
    assert ctrl.value == pytest.approx(0.1 * 1.02 * 1.02)
    with pytest.raises(ValueError, match="horizon"):
        get_kl_controller({"type": "adaptive", "horizon": 0})
