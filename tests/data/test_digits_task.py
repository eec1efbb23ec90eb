"""The built-in digits task: deterministic, the answer only in the image, resolvable as builtin://digits/...,
and every ground truth scores 1 under its routed scorer while the best constant answer stays well below."""

from collections import Counter

import pyarrow.parquet as pq
import pytest

from verlvl.data.digits_task import TASKS, write
from verlvl.reward.scorers import default_compute_score
from verlvl.trainer.builtin import resolve


def test_digits_task_is_deterministic_and_needs_the_image(tmp_path):
    a = write(str(tmp_path / "a"), 24, 4, max_digits=3, num_classes=10)
    b = write(str(tmp_path / "b"), 24, 4, max_digits=3, num_classes=10)
    assert pq.read_table(a["train"]).equals(pq.read_table(b["train"]))
    rows = pq.read_table(a["train"]).to_pylist()
    assert {r["prompt"][0]["content"] for r in rows} == set(TASKS.values())  # two fixed prompts
    assert Counter(r["extra_info"]["task"] for r in rows) == {"list": 12, "sum": 12}
    for r in rows:
        digits, truth = r["extra_info"]["digits"], r["reward_model"]["ground_truth"]
        assert 1 <= len(digits) <= 3 and r["data_source"] == "verlvl/digits"
        assert truth == (" ".join(map(str, sorted(digits))) if r["extra_info"]["task"] == "list" else str(sum(digits)))
        assert default_compute_score("verlvl/digits", truth, truth, r["extra_info"])["score"] == 1.0


def test_builtin_digits_resolves_and_the_default_beats_no_constant(tmp_path, monkeypatch):
    monkeypatch.setenv("VERLVL_CACHE", str(tmp_path))
    train = resolve("builtin://digits/train.parquet")
    assert train == str(tmp_path / "data" / "digits" / "train.parquet")
    rows = pq.read_table(resolve("builtin://digits/test.parquet")).to_pylist()
    answers = [r["reward_model"]["ground_truth"] for r in rows]
    best_constant = max(sum(default_compute_score("verlvl/digits", c, t, r["extra_info"])["score"]
                            for t, r in zip(answers, rows)) for c in set(answers)) / len(rows)
    assert 0.25 <= best_constant <= 0.45  # 3 digit classes: a constant answer gets about a third


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_main_ppo_trains_a_step_on_builtin_digits(ray_local, tmp_path, monkeypatch):
    """One CPU step and a validation on builtin://digits: the data resolves and the verlvl/digits scorer is
    the one the trainer routes to (the learning run itself is tests/bench/bench_digits_learning.py)."""
    from tests.trainer.helpers import SHORT, compose_config
    from verlvl.main_ppo import run_ppo

    monkeypatch.setenv("VERLVL_CACHE", str(tmp_path / "cache"))
    overrides = [o for o in SHORT if not o.startswith("trainer.test_freq")]
    result = run_ppo(compose_config(*overrides, "data.train_files=builtin://digits/train.parquet",
                                    "data.val_files=builtin://digits/test.parquet", "trainer.total_training_steps=1",
                                    "trainer.test_freq=1", f"trainer.default_local_dir={tmp_path / 'run'}"))
    assert 0.0 <= result.metrics["val-core/verlvl/digits/acc/mean@1"] <= 1.0
