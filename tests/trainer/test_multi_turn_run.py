"""`main_ppo` with multi_turn on CPU: the agent loop, its tools and metrics run inside the real trainer (Ray workers)."""

import json

import pytest

from tests.trainer.helpers import SHORT, compose_config
from verlvl.data.zoom_task import write
from verlvl.main_ppo import run_ppo
from verlvl.trainer.config import ConfigError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def multi_turn_config(files: dict, run_dir, *extra, steps: int = 2):
    return compose_config(
        *SHORT, f"trainer.total_training_steps={steps}", f"trainer.default_local_dir={run_dir}",
        f"data.train_files={files['train']}", f"data.val_files={files['test']}", "data.max_prompt_length=256",
        "data.max_response_length=48", "data.return_raw_chat=true", "actor_rollout_ref.rollout.multi_turn.enable=true",
        f"actor_rollout_ref.rollout.multi_turn.tool_config_path={files['tool_config']}",
        "actor_rollout_ref.rollout.multi_turn.max_assistant_turns=3", *extra)


def steps_of(run_dir) -> dict[int, dict]:
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        out.setdefault(row["step"], {}).update(row)
    return out


def test_multi_turn_run_logs_turn_metrics_and_resumes_exactly(ray_local, tmp_path, monkeypatch):
    monkeypatch.setenv("VERLVL_CACHE", str(tmp_path / "cache"))
    files = write(str(tmp_path / "zoom"), num_train=8, num_test=4, short_prompt=True)
    result = run_ppo(multi_turn_config(files, tmp_path / "whole"))
    metrics = result.metrics
    assert metrics["num_turns/min"] >= 2 and "multi_turn/tool_call_rate" in metrics
    assert "multi_turn/truncated_ratio" in metrics and 0 <= metrics["critic/score/mean"] <= 1
    whole = steps_of(tmp_path / "whole")
    assert all(abs(r["actor/pg_loss"]) < 1e3 for r in whole.values() if "actor/pg_loss" in r)
    # a run stopped after step 1 and resumed repeats step 2's trajectories (same turns, lengths, scores, loss)
    run_ppo(multi_turn_config(files, tmp_path / "part", "trainer.save_final=true", steps=1))
    run_ppo(multi_turn_config(files, tmp_path / "part"))
    part = steps_of(tmp_path / "part")
    for key in ("num_turns/mean", "response_length/mean", "critic/score/mean", "multi_turn/tool_calls/mean",
                "actor/pg_loss"):
        assert part[2][key] == pytest.approx(whole[2][key], rel=1e-6, abs=1e-7), key


def test_multi_turn_needs_the_chat_messages(tmp_path):
    files = write(str(tmp_path / "zoom"), num_train=8, num_test=4, short_prompt=True)
    cfg = multi_turn_config(files, tmp_path / "run", "data.return_raw_chat=false",
                            "actor_rollout_ref.rollout.multi_turn.function_tool_path=x.py")
    with pytest.raises(ConfigError) as e:
        run_ppo(cfg)
    assert "data.return_raw_chat=true" in str(e.value) and "multi_turn.function_tool_path" in str(e.value)
