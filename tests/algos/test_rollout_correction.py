"""Rollout correction (IS weights, rejection masks, mismatch metrics) against veRL's definitions, by hand."""

import math
import statistics

import pytest
import torch
from omegaconf import OmegaConf

from verlvl.algos.rollout_correction import (RS_OPTIONS, RolloutCorrectionConfig, bypass_old_log_probs,
                                             mismatch_metrics, rollout_correction)

# Three rows of five tokens: row 0 has a hole at 2 and padding at 4, row 1 is empty, row 2 is padded at 4.
# RATIO = pi_train / pi_rollout per token; the valid ratios are R0 and R2 (products 3.6 and 0.405).
F64 = torch.float64
MASK = torch.tensor([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=F64)
P_ROLLOUT = torch.tensor([[0.2, 0.5, 0.01, 0.4, 0.1], [0.1] * 5, [0.8, 0.5, 0.5, 1.0, 0.1]], dtype=F64)
RATIO = torch.tensor([[4.0, 0.6, 100.0, 1.5, 9.0], [7.0] * 5, [0.25, 1.0, 1.8, 0.9, 9.0]], dtype=F64)
ROLLOUT = P_ROLLOUT.log()
OLD = (P_ROLLOUT * RATIO).log()
R0, R2 = [4.0, 0.6, 1.5], [0.25, 1.0, 1.8, 0.9]
VALID = R0 + R2


def run(**config):
    return rollout_correction(OLD, ROLLOUT, MASK, RolloutCorrectionConfig(**config))


def rc(metrics, name):
    return metrics[f"rollout_corr/{name}"]


def close(tensor, expected):
    return torch.allclose(tensor, torch.tensor(expected, dtype=tensor.dtype))


def pstd(values):
    return statistics.pstdev(values)


def k3(ratio):
    return ratio - 1 - math.log(ratio)


def rows(mask_row0, mask_row2):
    return torch.tensor([mask_row0, [0] * 5, mask_row2], dtype=MASK.dtype)


# ---------------------------------------------------------------------------------------------- IS weights


def test_token_tis_weights_and_metrics():
    weights, mask, m = run(rollout_is="token", rollout_is_threshold=2.0)
    expected = [[2.0, 0.6, 0.0, 1.5, 0.0], [0.0] * 5, [0.25, 1.0, 1.8, 0.9, 0.0]]
    assert close(weights, expected)
    assert torch.equal(mask, MASK)
    applied = [2.0, 0.6, 1.5, 0.25, 1.0, 1.8, 0.9]
    mean = sum(applied) / 7
    assert rc(m, "rollout_is_mean") == pytest.approx(8.05 / 7)
    assert rc(m, "rollout_is_max") == pytest.approx(2.0) and rc(m, "rollout_is_min") == pytest.approx(0.25)
    assert rc(m, "rollout_is_ratio_fraction_high") == pytest.approx(1 / 7)  # raw 4 > 2
    assert rc(m, "rollout_is_ratio_fraction_low") == pytest.approx(1 / 7)  # raw 0.25 < 1 / 2
    assert rc(m, "rollout_is_std") == pytest.approx(pstd(applied))
    assert rc(m, "rollout_is_eff_sample_size") == pytest.approx(mean**2 / (sum(w * w for w in applied) / 7))
    row_means = [4.1 / 3, 0.0, 3.95 / 4]  # the empty row counts, with mean 0
    assert rc(m, "rollout_is_seq_mean") == pytest.approx(sum(row_means) / 3)
    assert rc(m, "rollout_is_seq_std") == pytest.approx(statistics.stdev(row_means))
    assert rc(m, "rollout_is_seq_max") == pytest.approx(4.1 / 3) and rc(m, "rollout_is_seq_min") == 0.0
    assert rc(m, "rollout_is_seq_max_deviation") == pytest.approx(1.0)
    assert rc(m, "rollout_is_seq_fraction_high") == pytest.approx(1 / 3)  # raw row 0 mean 6.1 / 3 > 2
    assert rc(m, "rollout_is_seq_fraction_low") == pytest.approx(1 / 3)  # the empty row
    assert "rollout_corr/rollout_is_batch_norm_factor" not in m
    assert "rollout_corr/rollout_is_oob_ratio" not in m


def test_sequence_tis_is_the_truncated_product_of_token_ratios():
    weights, _, m = run(rollout_is="sequence", rollout_is_threshold=2.0)
    expected = [[2.0, 2.0, 0.0, 2.0, 0.0], [0.0] * 5, [0.405] * 4 + [0.0]]  # products 3.6 and 0.405
    assert close(weights, expected)
    applied = [2.0] * 3 + [0.405] * 4
    assert rc(m, "rollout_is_mean") == pytest.approx(sum(applied) / 7)
    assert rc(m, "rollout_is_max") == pytest.approx(3.6)  # from the untruncated row log-ratios
    assert rc(m, "rollout_is_min") == pytest.approx(0.405)
    assert rc(m, "rollout_is_ratio_fraction_high") == pytest.approx(1 / 3)  # per row, the empty one included
    assert rc(m, "rollout_is_ratio_fraction_low") == pytest.approx(1 / 3)
    assert rc(m, "rollout_is_std") == pytest.approx(pstd(applied))  # token-weighted
    mean, mean_sq = sum(applied) / 7, sum(w * w for w in applied) / 7
    assert rc(m, "rollout_is_eff_sample_size") == pytest.approx(mean**2 / mean_sq)
    assert rc(m, "rollout_is_seq_mean") == pytest.approx(2.405 / 3)
    assert rc(m, "rollout_is_seq_fraction_high") == pytest.approx(1 / 3)  # raw row means 3.6, 0, 0.405
    assert rc(m, "rollout_is_seq_fraction_low") == pytest.approx(2 / 3)


def test_the_threshold_truncates_and_a_string_number_is_a_cap():
    weights, _, _ = run(rollout_is="token", rollout_is_threshold="1.5")
    assert close(weights, [[1.5, 0.6, 0.0, 1.5, 0.0], [0.0] * 5, [0.25, 1.0, 1.5, 0.9, 0.0]])
    weights, _, _ = run(rollout_is="sequence", rollout_is_threshold=5)
    assert weights[0, 0].item() == pytest.approx(3.6) and weights[2, 0].item() == pytest.approx(0.405)


def test_icepop_zeroes_weights_outside_the_bounds_and_keeps_the_mask():
    weights, mask, m = run(rollout_is="token", rollout_is_threshold="0.5_3.0")
    assert close(weights, [[0.0, 0.6, 0.0, 1.5, 0.0], [0.0] * 5, [0.0, 1.0, 1.8, 0.9, 0.0]])
    assert torch.equal(mask, MASK)
    assert rc(m, "rollout_is_oob_ratio") == pytest.approx(2 / 7)
    assert rc(m, "rollout_is_mean") == pytest.approx(5.8 / 7)
    assert rc(m, "rollout_is_min") == 0.0 and rc(m, "rollout_is_max") == pytest.approx(1.8)
    assert rc(m, "rollout_is_ratio_fraction_high") == pytest.approx(1 / 7)  # raw 4 > 3
    assert rc(m, "rollout_is_ratio_fraction_low") == pytest.approx(1 / 7)  # raw 0.25 < 0.5


def test_token_batch_normalisation_makes_the_token_mean_one():
    weights, _, m = run(rollout_is="token", rollout_is_threshold=2.0, rollout_is_batch_normalize=True)
    factor = 8.05 / 7
    assert rc(m, "rollout_is_batch_norm_factor") == pytest.approx(factor)
    assert rc(m, "rollout_is_mean") == pytest.approx(factor)  # the metrics describe the weights before
    assert weights[0].tolist() == pytest.approx([2.0 / factor, 0.6 / factor, 0.0, 1.5 / factor, 0.0])
    assert ((weights * MASK).sum() / MASK.sum()).item() == pytest.approx(1.0)


def test_sequence_batch_normalisation_averages_over_non_empty_rows():
    weights, _, m = run(rollout_is="sequence", rollout_is_threshold=2.0, rollout_is_batch_normalize=True)
    factor = (2.0 + 0.405) / 2  # one weight per non-empty row, whatever the row lengths
    assert rc(m, "rollout_is_batch_norm_factor") == pytest.approx(factor)
    assert weights[0, 0].item() == pytest.approx(2.0 / factor)
    assert weights[2, 3].item() == pytest.approx(0.405 / factor)
    assert weights[1].abs().sum().item() == 0.0


def test_seeded_batch_weights_follow_the_definitions():
    generator = torch.Generator().manual_seed(0)
    rollout = -torch.rand(4, 7, generator=generator) * 2
    old = rollout + 0.3 * torch.randn(4, 7, generator=generator)
    mask = (torch.rand(4, 7, generator=generator) > 0.3).float()
    mask[1] = 0
    mask[0, 0] = 1
    config = RolloutCorrectionConfig(rollout_is="token", rollout_is_threshold=1.2)
    weights, _, _ = rollout_correction(old, rollout, mask, config)
    assert torch.allclose(weights, torch.exp(old - rollout).clamp(max=1.2) * mask)
    config = RolloutCorrectionConfig(rollout_is="sequence", rollout_is_threshold=1e6)
    weights, _, _ = rollout_correction(old, rollout, mask, config)
    products = torch.where(mask.bool(), torch.exp(old - rollout), 1.0).prod(dim=-1, keepdim=True)
    assert torch.allclose(weights, products * mask)


def test_weights_are_detached_and_the_mask_keeps_its_dtype():
    old = OLD.clone().requires_grad_(True)
    config = RolloutCorrectionConfig(rollout_is="token", rollout_rs="token_k1", rollout_rs_threshold=2.0)
    weights, mask, metrics = rollout_correction(old, ROLLOUT, MASK.bool(), config)
    assert not weights.requires_grad and mask.dtype == torch.bool
    assert all(isinstance(value, float) for value in metrics.values())


# ---------------------------------------------------------------------------------------------- rejection


REJECTIONS = [  # (options, threshold, kept tokens of row 0, of row 2)
    ("token_k1", "0.5_2.0", [0, 1, 0, 1, 0], [0, 1, 1, 1, 0]),  # ratios 4 and 0.25 are out
    ("token_k1", 2.0, [0, 1, 0, 1, 0], [0, 1, 1, 1, 0]),  # a float k1 bound means lower = 1 / upper
    ("token_k2", 0.5, [0, 1, 0, 1, 0], [0, 1, 1, 1, 0]),  # (log 4)^2 / 2 = 0.96
    ("token_k3", 0.5, [0, 1, 0, 1, 0], [0, 1, 1, 1, 0]),  # k3(4) = 1.61, k3(0.25) = 0.64
    ("seq_sum_k1", "0.3_3.0", [0, 0, 0, 0, 0], [1, 1, 1, 1, 0]),  # k1 bounds 1 / ratio: 1 / 3.6 < 0.3
    ("seq_sum_k1", "0.2_2.0", [1, 1, 0, 1, 0], [0, 0, 0, 0, 0]),  # 1 / 0.405 = 2.47 > 2
    ("seq_sum_k2", 1.15, [0, 0, 0, 0, 0], [1, 1, 1, 1, 0]),  # 1.174 and 1.139
    ("seq_sum_k3", 1.0, [0, 0, 0, 0, 0], [1, 1, 1, 1, 0]),  # 1.819 and 0.854
    ("seq_mean_k1", 1.5, [0, 0, 0, 0, 0], [1, 1, 1, 1, 0]),  # geometric 1 / ratio 0.653 < 1 / 1.5
    ("seq_mean_k2", 0.3, [0, 0, 0, 0, 0], [1, 1, 1, 1, 0]),  # 0.391 and 0.285
    ("seq_mean_k3", 0.5, [0, 0, 0, 0, 0], [1, 1, 1, 1, 0]),  # 0.606 and 0.213
    ("seq_max_k2", 0.5, [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]),  # both rows reach 0.96
    ("seq_max_k3", 1.0, [0, 0, 0, 0, 0], [1, 1, 1, 1, 0]),  # 1.61 and 0.64
    ("token_k1, seq_mean_k3", "0.5_2.0,0.5", [0, 0, 0, 0, 0], [0, 1, 1, 1, 0]),  # every criterion must pass
]


@pytest.mark.parametrize("options,threshold,row0,row2", REJECTIONS)
def test_rejection_masks(options, threshold, row0, row2):
    weights, mask, m = run(rollout_rs=options, rollout_rs_threshold=threshold)
    assert weights is None
    assert torch.equal(mask, rows(row0, row2))
    rejected = 7 - sum(row0) - sum(row2)
    assert rc(m, "rollout_rs_masked_fraction") == pytest.approx(rejected / 7)
    rows_hit = (sum(row0) < 3) + (sum(row2) < 4)
    assert rc(m, "rollout_rs_seq_masked_fraction") == pytest.approx(rows_hit / 3)  # the empty row counts


def test_every_supported_option_is_exercised():
    tested = {name.strip() for options, *_ in REJECTIONS for name in options.split(",")}
    assert tested == set(RS_OPTIONS)


def test_sequence_rejection_metrics_for_seq_mean_k3():
    _, _, m = run(rollout_rs="seq_mean_k3", rollout_rs_threshold=0.5)
    s0, s2 = statistics.mean(map(k3, R0)), statistics.mean(map(k3, R2))
    p = "rollout_rs_seq_mean_k3"
    assert rc(m, f"{p}_mean") == pytest.approx((3 * s0 + 4 * s2) / 7)  # token-weighted
    assert rc(m, f"{p}_max") == pytest.approx(s0) and rc(m, f"{p}_min") == pytest.approx(s2)
    assert rc(m, f"{p}_fraction_high") == pytest.approx(0.5) and rc(m, f"{p}_fraction_low") == 0.0
    assert rc(m, f"{p}_std") == pytest.approx(pstd([0.5] * 3 + [s2] * 4))  # clamped to [0, 0.5]
    assert rc(m, f"{p}_seq_mean") == pytest.approx((s0 + s2) / 2)
    assert rc(m, f"{p}_seq_std") == pytest.approx(abs(s0 - s2) / math.sqrt(2))
    assert rc(m, f"{p}_seq_max") == pytest.approx(s0) and rc(m, f"{p}_seq_min") == pytest.approx(s2)
    assert rc(m, f"{p}_seq_max_deviation") == pytest.approx(s0)
    assert rc(m, f"{p}_seq_fraction_high") == pytest.approx(0.5)
    assert f"rollout_corr/{p}_seq_fraction_low" not in m  # only k1 options have a lower bound
    assert rc(m, f"{p}_masked_fraction") == pytest.approx(3 / 7)
    assert rc(m, f"{p}_seq_masked_fraction") == pytest.approx(1 / 2)  # over the non-empty rows


def test_token_rejection_metrics_for_token_k1():
    _, _, m = run(rollout_rs="token_k1", rollout_rs_threshold="0.5_2.0")
    stats = [-math.log(r) for r in VALID]  # k1 = -log(pi_train / pi_rollout)
    low, high = math.log(0.5), math.log(2.0)
    p = "rollout_rs_token_k1"
    assert rc(m, f"{p}_mean") == pytest.approx(statistics.mean(stats))
    assert rc(m, f"{p}_max") == pytest.approx(math.log(4))
    assert rc(m, f"{p}_min") == pytest.approx(-math.log(4))
    assert rc(m, f"{p}_fraction_high") == pytest.approx(1 / 7)
    assert rc(m, f"{p}_fraction_low") == pytest.approx(1 / 7)
    assert rc(m, f"{p}_std") == pytest.approx(pstd([min(max(s, low), high) for s in stats]))
    row_means = [-math.log(3.6) / 3, -math.log(0.405) / 4]
    assert rc(m, f"{p}_seq_mean") == pytest.approx(statistics.mean(row_means))
    assert rc(m, f"{p}_seq_std") == pytest.approx(statistics.stdev(row_means))
    assert rc(m, f"{p}_seq_max_deviation") == pytest.approx(max(map(abs, row_means)))
    assert rc(m, f"{p}_seq_fraction_high") == 0.0 and rc(m, f"{p}_seq_fraction_low") == 0.0
    assert rc(m, f"{p}_masked_fraction") == pytest.approx(2 / 7)
    assert rc(m, f"{p}_seq_masked_fraction") == pytest.approx(1.0)
    assert rc(m, "rollout_rs_seq_masked_fraction") == pytest.approx(2 / 3)


def test_is_and_rs_together_weights_use_the_original_mask():
    weights, mask, m = run(rollout_is="token", rollout_rs="seq_mean_k3", rollout_rs_threshold=0.5)
    assert weights[0].tolist() == pytest.approx([2.0, 0.6, 0.0, 1.5, 0.0])  # row 0 is rejected but weighted
    assert torch.equal(mask, rows([0] * 5, [1, 1, 1, 1, 0]))
    assert "rollout_corr/rollout_is_mean" in m and "rollout_corr/rollout_rs_masked_fraction" in m


# ---------------------------------------------------------------------------------------------- metrics


def test_mismatch_metrics_by_hand():
    m = mismatch_metrics(OLD, ROLLOUT, MASK)
    train_rows = [math.log(0.8 * 0.3 * 0.6) / 3, 0.0, math.log(0.2 * 0.5 * 0.9 * 0.9) / 4]  # empty row: 0
    rollout_rows = [math.log(0.2 * 0.5 * 0.4) / 3, 0.0, math.log(0.8 * 0.5 * 0.5 * 1.0) / 4]
    diffs = [r - t for r, t in zip(rollout_rows, train_rows)]
    assert diffs == pytest.approx([-math.log(3.6) / 3, 0.0, -math.log(0.405) / 4])
    expected = {
        "training_ppl": statistics.mean(math.exp(-t) for t in train_rows),
        "training_log_ppl": statistics.mean(-t for t in train_rows),
        "kl": -math.log(3.6 * 0.405) / 7,  # token mean of log pi_rollout - log pi_train
        "k3_kl": sum(map(k3, VALID)) / 7,
        "rollout_ppl": statistics.mean(math.exp(-r) for r in rollout_rows),
        "rollout_log_ppl": statistics.mean(-r for r in rollout_rows),
        "log_ppl_diff": statistics.mean(diffs),
        "log_ppl_abs_diff": statistics.mean(map(abs, diffs)),
        "log_ppl_diff_max": max(diffs),
        "log_ppl_diff_min": min(diffs),
        "ppl_ratio": statistics.mean(math.exp(d) for d in diffs),
        "chi2_token": sum(r * r for r in VALID) / 7 - 1,
        "chi2_seq": (3.6**2 + 1.0 + 0.405**2) / 3 - 1,
    }
    assert m == pytest.approx({f"rollout_corr/{key}": value for key, value in expected.items()})


def test_disabled_correction_still_reports_the_mismatch():
    weights, mask, m = rollout_correction(OLD, ROLLOUT, MASK, RolloutCorrectionConfig())
    assert weights is None and torch.equal(mask, MASK) and mask is not MASK
    assert m == mismatch_metrics(OLD, ROLLOUT, MASK)


def test_token_is_metric_names():
    _, _, m = run(rollout_is="token", rollout_is_batch_normalize=True)
    names = {key.removeprefix("rollout_corr/") for key in m}
    assert names == {
        "rollout_is_mean", "rollout_is_max", "rollout_is_min", "rollout_is_std", "rollout_is_eff_sample_size",
        "rollout_is_ratio_fraction_high", "rollout_is_ratio_fraction_low", "rollout_is_seq_mean",
        "rollout_is_seq_std", "rollout_is_seq_max", "rollout_is_seq_min", "rollout_is_seq_max_deviation",
        "rollout_is_seq_fraction_high", "rollout_is_seq_fraction_low", "rollout_is_batch_norm_factor",
        "training_ppl", "training_log_ppl", "kl", "k3_kl", "rollout_ppl", "rollout_log_ppl", "log_ppl_diff",
        "log_ppl_abs_diff", "log_ppl_diff_max", "log_ppl_diff_min", "ppl_ratio", "chi2_token", "chi2_seq",
    }


def test_bad_inputs():
    config = RolloutCorrectionConfig(rollout_is="token")
    with pytest.raises(ValueError, match="at least one valid token"):
        rollout_correction(OLD, ROLLOUT, torch.zeros_like(MASK), config)
    with pytest.raises(ValueError, match="same shape"):
        rollout_correction(OLD, ROLLOUT[:, :4], MASK, config)


# ---------------------------------------------------------------------------------------------- config


def test_config_from_mapping_and_enabled():
    assert RolloutCorrectionConfig.from_mapping(None) == RolloutCorrectionConfig()
    assert not RolloutCorrectionConfig().enabled
    assert RolloutCorrectionConfig.from_mapping({"rollout_is": "token"}).enabled
    rs_only = RolloutCorrectionConfig.from_mapping({"rollout_rs": "seq_mean_k1",
                                                    "rollout_rs_threshold": "0.99_1.01"})
    assert rs_only.enabled and rs_only.rollout_is is None
    yaml = OmegaConf.create({"rollout_is": "sequence", "rollout_is_threshold": "0.5_5.0", "bypass_mode": True,
                             "loss_type": "reinforce", "rollout_rs": None, "rollout_rs_threshold": None,
                             "rollout_is_batch_normalize": False})
    config = RolloutCorrectionConfig.from_mapping(yaml)
    assert config.bypass_mode and config.loss_type == "reinforce" and config.rollout_is_threshold == "0.5_5.0"


BAD_CONFIGS = [
    ({"rollout_is_thresh": 2.0}, r"unknown key algorithm\.rollout_correction\.rollout_is_thresh"),
    ({"rollout_is": "geometric"}, r"rollout_is must be one of null, 'token', 'sequence'; got 'geometric'"),
    ({"rollout_is": "token", "rollout_is_threshold": None}, r"rollout_is_threshold must be a positive"),
    ({"rollout_is": "token", "rollout_is_threshold": True}, r"rollout_is_threshold must be"),
    ({"rollout_is": "token", "rollout_is_threshold": "abc"}, r"rollout_is_threshold must be"),
    ({"rollout_is": "token", "rollout_is_threshold": -1.0}, r"rollout_is_threshold .*positive"),
    ({"rollout_is": "token", "rollout_is_threshold": "0_2"}, r"rollout_is_threshold .*positive"),
    ({"rollout_is": "token", "rollout_is_threshold": "3_2"}, r"rollout_is_threshold: the lower bound"),
    ({"rollout_rs": "seq_max_k1", "rollout_rs_threshold": 2.0},
     r"rollout_rs: unsupported option 'seq_max_k1'; supported: token_k1, token_k2, .*seq_max_k3"),
    ({"rollout_rs": " , ", "rollout_rs_threshold": 2.0}, r"rollout_rs must be null or a comma-separated"),
    ({"rollout_rs": "token_k1"}, r"rollout_rs_threshold must be a number .* when rollout_rs is set"),
    ({"rollout_rs": "token_k3", "rollout_rs_threshold": "0.1_0.5"}, r"token_k3 takes a single upper bound"),
    ({"rollout_rs": "token_k1,seq_mean_k3", "rollout_rs_threshold": "1,2,3"}, r"exactly 2"),
    ({"rollout_rs": "seq_sum_k1", "rollout_rs_threshold": 0.5}, r"lower <= upper"),  # lower 1 / 0.5 = 2
    ({"rollout_rs": "seq_sum_k2", "rollout_rs_threshold": "x"}, r"rollout_rs_threshold must be a positive"),
    ({"loss_type": "vanilla"}, r"loss_type must be one of 'ppo_clip', 'reinforce'"),
    ({"bypass_mode": "yes"}, r"bypass_mode must be true or false"),
    ({"rollout_is_batch_normalize": 1}, r"rollout_is_batch_normalize must be true or false"),
]


@pytest.mark.parametrize("mapping,message", BAD_CONFIGS)
def test_config_errors_name_the_key(mapping, message):
    with pytest.raises(ValueError, match=message):
        RolloutCorrectionConfig.from_mapping(mapping)


def test_config_errors_use_the_prefix_and_construction_checks_too():
    with pytest.raises(ValueError, match=r"my\.rc\.rollout_is must be one of"):
        RolloutCorrectionConfig.from_mapping({"rollout_is": "seq"}, prefix="my.rc")
    with pytest.raises(ValueError, match="rollout_is must be one of"):
        RolloutCorrectionConfig(rollout_is="seq")
    assert RolloutCorrectionConfig(rollout_is_threshold=None).rollout_is_threshold is None  # IS off: unused


def test_bypass_decision():
    assert not bypass_old_log_probs(None)
    assert not bypass_old_log_probs(RolloutCorrectionConfig(rollout_is="token"))
    assert bypass_old_log_probs(RolloutCorrectionConfig(bypass_mode=True))
    assert not bypass_old_log_probs(RolloutCorrectionConfig(), has_rollout_log_probs=False)
    with pytest.raises(ValueError, match="bypass_mode=true needs the rollout's log-probs"):
        bypass_old_log_probs(RolloutCorrectionConfig(bypass_mode=True), has_rollout_log_probs=False)
