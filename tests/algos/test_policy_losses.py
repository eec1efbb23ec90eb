"""GSPO, CISPO, GPG and GMPO (geo_mean) as veRL computes them, on hand-computed examples."""

import math

import pytest
import torch

from verlvl.algos import LOSS_AGG_MODES, get_policy_loss_fn


def test_gspo_uses_one_ratio_per_sequence():
    old = torch.zeros(1, 2)
    new = torch.tensor([[0.2, -0.2]], requires_grad=True)  # token ratios e^.2, e^-.2; sequence ratio 1
    adv, mask = torch.ones(1, 2), torch.ones(1, 2)
    loss, clipfrac, ppo_kl, _ = get_policy_loss_fn("gspo")(old, new, adv, mask, "token-mean", {})
    assert loss.item() == pytest.approx(-1.0) and clipfrac.item() == 0.0
    assert ppo_kl.item() == pytest.approx(0.0) and not ppo_kl.requires_grad


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_gspo_always_aggregates_seq_mean_token_mean(mode):
    old, new = torch.zeros(2, 3), torch.zeros(2, 3, requires_grad=True)  # ratio 1: token loss = -A
    adv = torch.tensor([[1.0, 1.0, 1.0], [-2.0, 5.0, 5.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    loss, _, _, _ = get_policy_loss_fn("gspo")(old, new, adv, mask, mode, {"clip_ratio": 0.2})
    assert loss.item() == pytest.approx((-1.0 + 2.0) / 2)  # row means -1 and 2; token-mean would be -1/4


def test_cispo_keeps_gradients_clips_the_weight_and_reports_the_clamped_kl():
    old = torch.zeros(1, 2)
    far = torch.tensor([[2.0, 25.0]], requires_grad=True)  # ratios e^2 and e^25, far outside any clip
    adv, mask = torch.ones(1, 2), torch.ones(1, 2)
    cispo = get_policy_loss_fn("cispo")
    loss, clipfrac, ppo_kl, _ = cispo(old, far, adv, mask, "token-mean", {"clip_ratio": 0.2})
    loss.backward()
    assert far.grad[0].tolist() == pytest.approx([-1.2 / 2, -1.2 / 2])  # PPO's clip would have zeroed them
    assert loss.item() == pytest.approx(-(1.2 * 2.0 + 1.2 * 25.0) / 2)
    assert clipfrac.item() == 1.0
    assert ppo_kl.item() == pytest.approx(-(2.0 + 20.0) / 2)  # the log ratio clamped at 20
    assert not ppo_kl.requires_grad


def test_gpg_is_minus_log_prob_times_advantage():
    old = torch.zeros(2, 2)
    new = torch.log(torch.tensor([[0.5, 0.25], [0.1, 0.9]])).requires_grad_()
    adv = torch.tensor([[1.0, 2.0], [7.0, 7.0]])
    mask = torch.tensor([[1, 1], [0, 0]])
    loss, clipfrac, ppo_kl, _ = get_policy_loss_fn("gpg")(old, new, adv, mask, "token-mean", {})
    assert loss.item() == pytest.approx((math.log(2) * 1 + math.log(4) * 2) / 2)
    assert clipfrac.item() == 0.0 and ppo_kl.item() == pytest.approx((math.log(2) + math.log(4)) / 2)
    loss, _, _, _ = get_policy_loss_fn("gpg")(old, new, adv, mask, "seq-mean-token-sum", {})
    assert loss.item() == pytest.approx(math.log(2) * 1 + math.log(4) * 2)  # one non-empty row


def geo_mean_case():
    old = torch.zeros(3, 2)
    new = torch.tensor([[0.5, -0.1], [0.5, -0.5], [9.0, 9.0]], requires_grad=True)  # log ratios
    adv = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [3.0, 3.0]])
    mask = torch.tensor([[1, 1], [1, 1], [0, 0]])  # the last row is empty
    return old, new, adv, mask


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_geo_mean_by_hand(mode):
    old, new, adv, mask = geo_mean_case()
    loss, clipfrac, ppo_kl, clipfrac_lower = get_policy_loss_fn("geo_mean")(old, new, adv, mask, mode,
                                                                            {"clip_ratio": 0.2})
    # row 0 (A > 0): min(x, clip(x)) = 0.2, -0.1 -> mean 0.05; row 1 (A < 0): max(x, clip(x)) = 0.5, -0.2
    # -> mean 0.15; the empty row: ratio e^0, advantage 0. Loss: the mean over all three rows, any mode.
    assert loss.item() == pytest.approx((-math.exp(0.05) + math.exp(0.15) + 0.0) / 3)
    assert clipfrac.item() == pytest.approx(1 / 4)  # row 0's 0.5 (A > 0) of 4 tokens
    assert clipfrac_lower.item() == pytest.approx(2 / 4)  # row 1's 0.5 and -0.5 (A < 0)
    assert ppo_kl.item() == pytest.approx(-(0.5 - 0.1 + 0.5 - 0.5) / 4)


def test_geo_mean_over_the_mini_batchs_rows_when_split():
    old, new, adv, mask = geo_mean_case()
    geo_mean, config = get_policy_loss_fn("geo_mean"), {"clip_ratio": 0.2}
    whole = geo_mean(old, new, adv, mask, "token-mean", config)[0]
    parts = [geo_mean(old[i:i + 1], new[i:i + 1], adv[i:i + 1], mask[i:i + 1], "token-mean", config,
                      global_rows=3.0, dp_size=1)[0] for i in range(3)]
    assert sum(parts).item() == pytest.approx(whole.item())
    with pytest.raises(ValueError, match="global_rows"):
        geo_mean(old, new, adv, mask, "token-mean", config, global_tokens=4.0, dp_size=2)
