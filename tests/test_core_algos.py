"""Loss pieces on hand-computed examples."""

import math

import pytest
import torch

from verlvl.trainer.core_algos import agg_loss, clipped_value_loss, get_policy_loss_fn, kl_penalty


def test_ppo_clip_and_dual_clip_by_hand():
    loss_fn = get_policy_loss_fn("vanilla")
    old = torch.zeros(1, 3)
    new = torch.log(torch.tensor([[1.5, 0.5, 5.0]]))  # ratios 1.5, 0.5, 5.0
    adv = torch.tensor([[1.0, 1.0, -1.0]])
    mask = torch.ones(1, 3)
    loss, clipfrac, _, clipfrac_lower = loss_fn(old, new, adv, mask, "token-mean", {"clip_ratio": 0.2,
                                                                                      "clip_ratio_c": 3.0})
    # token 1: max(-1.5, -1.2) = -1.2 (clipped); token 2: max(-0.5, -0.8) = -0.5;
    # token 3 (A<0): max(5.0, 1.2) = 5.0, dual clip min(3.0, 5.0) = 3.0
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 3.0) / 3)
    assert clipfrac.item() == pytest.approx(1 / 3)  # token 1 is clipped (veRL: clipped term larger)
    assert clipfrac_lower.item() == pytest.approx(1 / 3)


def test_kl_estimators_by_hand():
    lp, ref = torch.tensor([0.0]), torch.tensor([math.log(0.5)])
    d = math.log(2)
    assert kl_penalty(lp, ref, "kl").item() == pytest.approx(d)
    assert kl_penalty(lp, ref, "abs").item() == pytest.approx(d)
    assert kl_penalty(lp, ref, "mse").item() == pytest.approx(0.5 * d * d)
    assert kl_penalty(lp, ref, "low_var_kl").item() == pytest.approx(0.5 - math.log(0.5) - 1)
    with pytest.raises(ValueError, match="unknown kl penalty"):
        kl_penalty(lp, ref, "nope")


def test_loss_aggregation_modes_by_hand():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert agg_loss(loss, mask, "token-mean").item() == pytest.approx(10 / 4)
    assert agg_loss(loss, mask, "seq-mean-token-sum").item() == pytest.approx((6 + 4) / 2)
    assert agg_loss(loss, mask, "seq-mean-token-mean").item() == pytest.approx((2 + 4) / 2)
    assert agg_loss(loss, mask, "seq-mean-token-sum-norm").item() == pytest.approx((6 / 3 + 4 / 3) / 2)
    # a micro-batch's share of a larger mini-batch: halves sum to the whole
    whole = agg_loss(loss, mask, "token-mean")
    parts = [agg_loss(loss[i:i + 1], mask[i:i + 1], "token-mean", global_tokens=4.0) for i in range(2)]
    assert sum(parts).item() == pytest.approx(whole.item())


def test_clipped_value_loss_by_hand():
    vpreds, returns, values = torch.tensor([[2.0]]), torch.tensor([[0.0]]), torch.tensor([[0.0]])
    loss, clipfrac = clipped_value_loss(vpreds, returns, values, torch.ones(1, 1), cliprange_value=0.5)
    assert loss.item() == pytest.approx(0.5 * 4.0)  # max((2-0)^2, (0.5-0)^2)
    assert clipfrac.item() == 0.0
