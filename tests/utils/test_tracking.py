"""Trackers: veRL's console line, a JSONL row per step, tensorboard events, wandb offline without network."""

import json

import pytest

from verlvl.utils.tracking import Tracking, format_console_line


def test_console_line_in_verl_form():
    line = format_console_line(3, {"critic/score/mean": 0.5, "actor/pg_loss": -0.25, "internal/x": 1.0})
    assert line == "step:3 - actor/pg_loss:-0.25 - critic/score/mean:0.5"


def test_jsonl_tensorboard_and_offline_wandb(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    lines = []
    tracker = Tracking(["console", "jsonl", "tensorboard", "wandb"], "proj", "exp", str(tmp_path), config={"a": 1},
                       console=lines.append)
    tracker.log({"critic/score/mean": 0.5, "timing_s/step": 1.0}, step=1)
    tracker.log({"critic/score/mean": float("nan")}, step=2)
    tracker.close()
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows == [{"step": 1, "critic/score/mean": 0.5, "timing_s/step": 1.0},
                    {"step": 2, "critic/score/mean": None}]
    assert lines[0] == "step:1 - critic/score/mean:0.5 - timing_s/step:1"
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert list((tmp_path / "wandb").glob("offline-run-*"))


def test_unknown_tracker_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"unknown tracker\(s\) \['mlflow'\]"):
        Tracking(["mlflow"], "p", "e", str(tmp_path))
