"""Group-baseline estimators as veRL computes them, on hand-computed examples."""

import numpy as np
import pytest
import torch

from verlvl.algos import get_adv_estimator_fn


def outcome(scores, length=3):
    """Token rewards with each score on the last of `length` valid tokens."""
    rewards = torch.zeros(len(scores), length)
    rewards[:, -1] = torch.tensor(scores)
    return rewards, torch.ones(len(scores), length)


def uids(*labels):
    return np.array(labels, dtype=object)


def first_token(name, scores, index, **kwargs):
    rewards, mask = outcome(scores)
    estimator = get_adv_estimator_fn(name)
    return estimator(token_level_rewards=rewards, response_mask=mask, index=index, **kwargs)[0][:, 0]


def test_grpo_and_dr_grpo():
    index = uids("a", "a", "b", "b", "c")
    adv = first_token("grpo", [1.0, 0.0, 1.0, 1.0, 2.0], index)
    std = 0.5 ** 0.5  # group a: scores 1, 0 -> mean .5, unbiased std .7071
    assert adv.tolist() == pytest.approx([0.5 / (std + 1e-6), -0.5 / (std + 1e-6), 0.0, 0.0, 2.0 / 1.000001])
    dr = first_token("grpo", [1.0, 0.0, 1.0, 1.0, 2.0], index, norm_adv_by_std_in_grpo=False)
    assert dr.tolist() == pytest.approx([0.5, -0.5, 0.0, 0.0, 2.0])  # a prompt alone keeps its score


def test_grpo_vectorized_floors_the_variance():
    index = uids("a", "a")
    scores = [1.0, 1.0002]  # variance 2e-8 < eps 1e-6: std sqrt(1e-6) = 1e-3 instead of 1.41e-4
    vec = first_token("grpo_vectorized", scores, index)
    assert vec.tolist() == pytest.approx([-0.0001 / (1e-3 + 1e-6), 0.0001 / (1e-3 + 1e-6)], rel=1e-2)
    loop = first_token("grpo", scores, index)
    assert loop[1].item() == pytest.approx(0.0001 / (2e-8 ** 0.5 + 1e-6), rel=1e-2)


def test_grpo_passk_rewards_only_the_best_sample():
    index = uids("a", "a", "a", "b", "b")
    std = (7 / 3) ** 0.5  # group a: 1, 0, 3
    scores = [1.0, 0.0, 3.0, 1.0, 1.0]
    adv = first_token("grpo_passk", scores, index, config={"norm_adv_by_std_in_grpo": True})
    assert adv.tolist() == pytest.approx([0.0, 0.0, 2.0 / (std + 1e-6), 0.0, 0.0])  # (best - second) / std
    raw = first_token("grpo_passk", scores, index, config={"norm_adv_by_std_in_grpo": False})
    assert raw.tolist() == pytest.approx([0.0, 0.0, 2.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="at least 2 samples"):
        first_token("grpo_passk", [1.0, 0.0, 3.0], uids("a", "a", "b"), config={})


def test_rloo_leaves_one_out_and_its_vectorised_form_zeroes_lone_samples():
    index = uids("a", "a", "a", "b")
    adv = first_token("rloo", [3.0, 0.0, 0.0, 5.0], index)
    assert adv.tolist() == pytest.approx([3.0, -1.5, -1.5, 5.0])  # 3 - mean(0,0); 0 - mean(3,0); alone: score
    vec = first_token("rloo_vectorized", [3.0, 0.0, 0.0, 5.0], index)
    assert vec.tolist() == pytest.approx([3.0, -1.5, -1.5, 0.0])


def test_opo_uses_the_length_weighted_group_mean():
    rewards = torch.zeros(3, 4)
    rewards[:, 0] = torch.tensor([1.0, 0.0, 5.0])
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    opo = get_adv_estimator_fn("opo")
    adv, _ = opo(token_level_rewards=rewards, response_mask=mask, index=uids("a", "a", "b"))
    # group a: lengths 2 and 4, baseline (2 * 1 + 4 * 0) / 6 = 1/3; b alone keeps its score
    assert adv[:, 0].tolist() == pytest.approx([2 / 3, -1 / 3, 5.0])
    assert adv[0, 2].item() == 0.0  # masked tokens carry no advantage


def test_gpg_scales_by_rows_over_rows_with_a_non_zero_score():
    adv = first_token("gpg", [1.0, 0.0, 0.0, 2.0], uids("a", "a", "a", "b"))
    alpha = 4 / 2  # 4 rows, 2 non-zero scores; group a mean 1/3, b alone (mean 0)
    assert adv.tolist() == pytest.approx([alpha * 2 / 3, -alpha / 3, -alpha / 3, alpha * 2.0])


def test_reinforce_plus_plus_baseline_centres_then_whitens():
    rewards, mask = outcome([1.0, 0.0, 4.0])
    adv, _ = get_adv_estimator_fn("reinforce_plus_plus_baseline")(rewards, mask, uids("a", "a", "b"))
    # centred: 0.5, -0.5 and 4 (alone), each on 3 tokens: mean 4/3, deviations -5/6, -11/6, 8/3 (unbiased var)
    mean, std = 4 / 3, (3 * ((5 / 6) ** 2 + (11 / 6) ** 2 + (8 / 3) ** 2) / 8) ** 0.5
    expected = [(0.5 - mean) / std, (-0.5 - mean) / std, (4 - mean) / std]
    assert adv[:, 0].tolist() == pytest.approx(expected, rel=1e-4)
