"""veRL's validation metrics: mean/std@N per prompt, bootstrap best/worst/maj@n, val-core vs val-aux."""

import numpy as np
import pytest

from verlvl.trainer.validation_metrics import bootstrap, majority_value, subset_sizes, validation_metrics


def test_subset_sizes_double_up_to_n():
    assert subset_sizes(1) == [] and subset_sizes(2) == [2] and subset_sizes(5) == [2, 4, 5]
    assert subset_sizes(8) == [2, 4, 8]


def test_majority_takes_the_first_value_of_the_most_common_prediction():
    assert majority_value([0.9, 0.8, 0.7], ["A", "B", "A"]) == 0.9
    assert majority_value([0.1, 1.0, 0.0], ["B", "A", "A"]) == 1.0


def test_bootstrap_of_constant_values_has_no_spread_and_best_is_at_least_worst():
    out = bootstrap([1.0, 1.0, 1.0], None, 2, seed=42)
    assert out == {"best": (1.0, 0.0), "worst": (1.0, 0.0)}
    out = bootstrap([0.0, 1.0], ["x", "y"], 2, seed=42)
    assert out["best"][0] >= out["worst"][0]
    # best of 2 draws from {0, 1}: 1 unless both draws are 0 (p = 1/4)
    assert out["best"][0] == pytest.approx(0.75, abs=0.05) and out["worst"][0] == pytest.approx(0.25, abs=0.05)


def test_per_prompt_then_per_source_and_the_headline_metrics():
    sources = ["geo"] * 4 + ["math"] * 2
    uids = ["a", "a", "b", "b", "c", "c"]
    infos = {"reward": [1.0, 0.0, 1.0, 1.0, 0.0, 0.0], "acc": [1.0, 0.0, 1.0, 1.0, 0.0, 0.0],
             "pred": ["3", "4", "3", "3", "7", "8"]}
    m = validation_metrics(sources, uids, infos)
    assert m["val-core/geo/acc/mean@2"] == pytest.approx(0.75)  # prompt a 0.5, prompt b 1.0
    assert m["val-aux/geo/acc/std@2"] == pytest.approx(np.mean([0.5, 0.0]))
    assert "val-core/geo/acc/best@2/mean" in m and "val-core/geo/acc/maj@2/mean" in m
    assert "val-aux/geo/acc/worst@2/mean" in m and "val-aux/geo/reward/mean@2" in m  # acc is the core variable
    assert m["val-core/math/acc/mean@2"] == 0.0
    assert not any("/pred/" in k for k in m)
    single = validation_metrics(["geo", "geo"], ["a", "b"], {"reward": [1.0, 0.0]})
    assert single == {"val-core/geo/reward/mean@1": 0.5}
