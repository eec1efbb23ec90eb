"""PPO's policy and value losses on hand-computed examples; the calling convention every policy loss keeps."""

import pytest
import torch

from verlvl.algos import POLICY_LOSSES, clipped_value_loss, get_policy_loss_fn
from verlvl.algos.losses import policy_loss_option
from verlvl.workers.config import ActorConfig


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


def test_clipped_value_loss_by_hand():
    vpreds, returns, values = torch.tensor([[2.0]]), torch.tensor([[0.0]]), torch.tensor([[0.0]])
    loss, clipfrac = clipped_value_loss(vpreds, returns, values, torch.ones(1, 1), cliprange_value=0.5)
    assert loss.item() == pytest.approx(0.5 * 4.0)  # max((2-0)^2, (0.5-0)^2)
    assert clipfrac.item() == 0.0
    vpreds = torch.tensor([[-1.0]])  # clipped to -0.5, further from the return 1.0: the clipped loss counts
    loss, clipfrac = clipped_value_loss(vpreds, torch.tensor([[1.0]]), values, torch.ones(1, 1), 0.5)
    assert loss.item() == pytest.approx(0.5 * 4.0) and clipfrac.item() == 0.0
    vpreds, returns = torch.tensor([[2.0]]), torch.tensor([[3.0]])
    loss, clipfrac = clipped_value_loss(vpreds, returns, values, torch.ones(1, 1), 0.5)
    assert loss.item() == pytest.approx(0.5 * 2.5 ** 2) and clipfrac.item() == 1.0  # (0.5 - 3)^2 > (2 - 3)^2


@pytest.mark.parametrize("name", sorted(POLICY_LOSSES))
def test_every_policy_loss_takes_the_actors_call_and_returns_detached_metrics(name):
    """The actor calls fn(old, new, adv, mask, mode, ActorConfig, rollout_log_probs=..., global_tokens=...,
    global_seqs=..., dp_size=...) and reads four scalars; only the loss carries a gradient."""
    torch.manual_seed(0)
    old = torch.randn(3, 4)
    new = (old + 0.1 * torch.randn(3, 4)).requires_grad_()
    adv, mask = torch.randn(3, 4), torch.ones(3, 4)
    counts = {"global_tokens": 12.0, "global_seqs": 3.0, "global_rows": 3.0, "dp_size": 1}
    out = get_policy_loss_fn(name)(old, new, adv, mask, "token-mean", ActorConfig(tis_imp_ratio_cap=2.0),
                                   rollout_log_probs=old - 0.1, **counts)
    assert len(out) == 4 and all(t.dim() == 0 for t in out)
    assert out[0].requires_grad and not any(t.requires_grad for t in out[1:])
    out[0].backward()
    assert new.grad.abs().sum() > 0


def test_policy_loss_options_come_from_veRLs_sub_config_or_the_actor_config():
    assert policy_loss_option({"policy_loss": {"clip_cov_ratio": 0.5}}, "clip_cov_ratio", 0.0002) == 0.5
    flat = {"policy_loss": "clip_cov", "clip_cov_ratio": 0.3}
    assert policy_loss_option(flat, "clip_cov_ratio", 0.0002) == 0.3
    assert policy_loss_option(ActorConfig(), "kl_cov_ratio", 0.0002) == 0.0002
