"""`main_ppo` with multi_turn on CPU: the agent loop, its tools and metrics run inside the real trainer (Ray workers)."""

import json

import pytest

from tests.trainer.helpers import SHORT, compose_config
from verlvl.data.zoom_task import write
from verlvl.main_ppo import run_ppo
from verlvl.trainer.config import ConfigError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def multi_turn_config(files: dict, run_dir, *extra):
    return compose_config(
        *SHORT, "trainer.total_training_steps=2", f"trainer.default_local_dir={run_dir}",
        f"data.train_files={files['train']}", f"data.val_files={files['test']}", "data.max_prompt_length=256",
        "data.max_response_length=48", "data.return_raw_chat=true", "actor_rollout_ref.rollout.multi_turn.enable=true",
        f"actor_rollout_ref.rollout.multi_turn.tool_config_path={files['tool_config']}",
        "actor_rollout_ref.rollout.multi_turn.max_assistant_turns=3", *extra)


def test_multi_turn_run_logs_turn_metrics(ray_local, tmp_path, monkeypatch):
    monkeypatch.setenv("VERLVL_CACHE", str(tmp_path / "cache"))
    files = write(str(tmp_path / "zoom"), num_train=8, num_test=4, short_prompt=True)
    result = run_ppo(multi_turn_config(files, tmp_path / "run"))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    metrics = result.metrics
    assert metrics["num_turns/min"] >= 2 and "multi_turn/tool_call_rate" in metrics
    assert "multi_turn/truncated_ratio" in metrics and 0 <= metrics["critic/score/mean"] <= 1
    assert all(abs(r["actor/pg_loss"]) < 1e3 for r in rows if "actor/pg_loss" in r)


def test_multi_turn_needs_the_chat_messages(tmp_path):
    files = write(str(tmp_path / "zoom"), num_train=8, num_test=4, short_prompt=True)
    cfg = multi_turn_config(files, tmp_path / "run", "data.return_raw_chat=false",
                            "actor_rollout_ref.rollout.multi_turn.function_tool_path=x.py")
    with pytest.raises(ConfigError) as e:
        run_ppo(cfg)
    assert "data.return_raw_chat=true" in str(e.value) and "multi_turn.function_tool_path" in str(e.value)
