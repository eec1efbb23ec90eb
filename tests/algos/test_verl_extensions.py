"""Estimators and policy losses written with veRL's decorators and signatures register and run unchanged."""

import numpy as np
import pytest
import torch

from verlvl.algos import (ADV_ESTIMATORS, POLICY_LOSSES, AdvantageEstimator, ConfigView, agg_loss, call_policy_loss,
                          compute_advantage, get_adv_estimator_fn, get_policy_loss_fn, register_adv_est,
                          register_policy_loss)
from verlvl.workers.config import ActorConfig, PolicyLossConfig


@pytest.fixture
def cleanup():
    added = []
    yield added
    for registry, name in added:
        registry.pop(name, None)


def test_estimator_by_name_or_enum_and_only_the_keywords_it_declares(cleanup):
    @register_adv_est("verl_style_est")
    def verl_style(token_level_rewards, response_mask, index, epsilon=1e-6, config=None):  # no **kwargs
        assert config.get("gamma") == 0.5 and config.gamma == 0.5  # AlgoConfig-like: both ways
        return token_level_rewards * 2, token_level_rewards

    cleanup.append((ADV_ESTIMATORS, "verl_style_est"))
    rewards, mask = torch.ones(2, 3), torch.ones(2, 3)
    advantages, _ = compute_advantage("verl_style_est", token_level_rewards=rewards, response_mask=mask,
                                      index=np.array(["a", "a"], dtype=object), gamma=0.5, lam=1.0,
                                      config=ConfigView({"gamma": 0.5}), norm_adv_by_std_in_grpo=True)
    assert advantages.sum() == 12
    assert get_adv_estimator_fn(AdvantageEstimator.GRPO) is get_adv_estimator_fn("grpo")
    assert register_adv_est(AdvantageEstimator.GAE)(ADV_ESTIMATORS["gae"]) is ADV_ESTIMATORS["gae"]  # same fn: fine
    with pytest.raises(ValueError, match="advantage estimator 'grpo' is already registered"):
        register_adv_est(AdvantageEstimator.GRPO)(verl_style)


def verl_vanilla(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean", config=None,
                 rollout_is_weights=None):
    """veRL's compute_policy_loss_vanilla, as a user would copy it (no dual clip)."""
    clip = config.clip_ratio
    low = config.clip_ratio_low if config.clip_ratio_low is not None else clip
    high = config.clip_ratio_high if config.clip_ratio_high is not None else clip
    negative_approx_kl = torch.clamp(log_prob - old_log_prob, min=-20.0, max=20.0)
    ratio = torch.exp(negative_approx_kl)
    losses1, losses2 = -advantages * ratio, -advantages * torch.clamp(ratio, 1 - low, 1 + high)
    losses = torch.maximum(losses1, losses2)
    if rollout_is_weights is not None:
        losses = losses * rollout_is_weights
    loss = agg_loss(loss_mat=losses, loss_mask=response_mask, loss_agg_mode=loss_agg_mode, **config.global_batch_info)
    clipfrac = ((losses2 > losses1).float() * response_mask).sum() / response_mask.sum()
    return loss, {"actor/pg_clipfrac": clipfrac.item(), "actor/ppo_kl": 0.0, "actor/pg_clipfrac_lower": 0.0,
                  "actor/mine": config.policy_loss.get("loss_mode") == "verl_vanilla"}


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_a_veRL_signature_loss_matches_the_builtin_through_the_actors_call(cleanup, mode):
    register_policy_loss("verl_vanilla")(verl_vanilla)
    cleanup.append((POLICY_LOSSES, "verl_vanilla"))
    torch.manual_seed(0)
    old, adv = torch.randn(3, 5), torch.randn(3, 5)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]])
    rollout = old + 0.3 * torch.randn(3, 5)
    counts = {"global_tokens": 16.0, "global_seqs": 4.0, "global_rows": 6.0, "dp_size": 2, "loss_scale_factor": 5}
    config = ActorConfig(clip_ratio_c=1e9, tis_imp_ratio_cap=2.0,
                         policy_loss=PolicyLossConfig(loss_mode="verl_vanilla"))
    outs = []
    for name in ("vanilla", "verl_vanilla"):
        new = (old + 0.2 * torch.randn(3, 5, generator=torch.Generator().manual_seed(1))).requires_grad_()
        outs.append(call_policy_loss(get_policy_loss_fn(name), old, new, adv, mask, mode, config,
                                     rollout_log_probs=rollout, **counts))
        outs[-1][0].backward()
        outs[-1] = (*outs[-1], new.grad)
    (builtin, clip_b, _, _, extra_b, grad_b), (user, clip_u, _, _, extra_u, grad_u) = outs
    assert user.item() == pytest.approx(builtin.item(), abs=1e-6)  # same global counts, same TIS weights
    assert torch.allclose(grad_u, grad_b, atol=1e-6)
    assert isinstance(clip_u, torch.Tensor) and clip_u.item() == pytest.approx(clip_b.item(), abs=1e-6)
    assert extra_b == {} and extra_u == {"actor/mine": 1.0}


def test_a_loss_returning_something_else_is_named(cleanup):
    @register_policy_loss("bad_shape")
    def bad(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config, rollout_is_weights=None):
        return (log_prob.sum(),)

    cleanup.append((POLICY_LOSSES, "bad_shape"))
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match=r"\.bad returned 1 values; expected \(pg_loss, metrics dict\)"):
        call_policy_loss(bad, x, x, x, torch.ones(1, 2), "token-mean", ActorConfig())
    with pytest.raises(ValueError, match="policy loss 'vanilla' is already registered"):
        register_policy_loss("vanilla")(bad)


def test_agg_loss_takes_veRL_names_for_the_global_counts():
    loss, mask = torch.arange(6.0).view(2, 3), torch.tensor([[1, 1, 0], [1, 0, 0]])
    ours = agg_loss(loss, mask, "token-mean", dp_size=2, global_tokens=6.0)
    assert agg_loss(loss, mask, "token-mean", dp_size=2, batch_num_tokens=6.0).item() == ours.item()
    seq = agg_loss(loss, mask, "seq-mean-token-sum", dp_size=2, global_seqs=4.0)
    assert agg_loss(loss, mask, "seq-mean-token-sum", dp_size=2, global_batch_size=4.0).item() == seq.item()


def test_config_view_reads_mappings_dataclasses_and_nesting():
    view = ConfigView(ActorConfig(clip_ratio=0.3), global_batch_info={"dp_size": 1})
    assert view.clip_ratio == view["clip_ratio"] == view.get("clip_ratio") == 0.3
    assert view.get("nope", 7) == 7 and view.global_batch_info == {"dp_size": 1}
    nested = ConfigView({"pf_ppo": {"weight_pow": 2.0}})
    assert nested.pf_ppo.get("weight_pow") == 2.0 and dict(nested.pf_ppo) == {"weight_pow": 2.0}
    with pytest.raises(AttributeError, match="config has no key 'nope'"):
        view.nope
    with pytest.raises(TypeError, match="read-only"):
        view.clip_ratio = 1.0
