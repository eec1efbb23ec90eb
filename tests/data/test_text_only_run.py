"""dmmrl's GSM8K path end to end on CPU: gsm8k.py's text-only rows (no images column) train a tiny text Qwen2."""

import pytest

from tests.data.test_geo3k import load_script
from tests.data.test_user_datasets import hub_parquet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_gsm8k_rows_train_a_tiny_text_model_through_the_same_trainer(ray_local, tmp_path, monkeypatch):
    from tests.trainer.helpers import SHORT, compose_config
    from verlvl.main_ppo import run_ppo
    from verlvl.models.tiny import build_tiny_qwen_text

    monkeypatch.setenv("VERLVL_CACHE", str(tmp_path / "cache"))
    n = 8
    source = hub_parquet(tmp_path / "gsm8k", "main", {
        split: {"question": [f"What is {k} + {k}?" for k in range(n)],
                "answer": [f"{k} + {k} = {2 * k}\n#### {2 * k}" for k in range(n)]} for split in ("train", "test")})
    data = load_script("gsm8k").main(["--local_dataset_path", str(source), "--local_save_dir", str(tmp_path / "data")])
    model = build_tiny_qwen_text(tmp_path / "text_model")
    overrides = [o for o in SHORT if not o.startswith("trainer.test_freq")]
    result = run_ppo(compose_config(
        "preset=tiny_demo", *overrides, f"actor_rollout_ref.model.path={model}",
        f"data.train_files={data['train']}", f"data.val_files={data['test']}", "data.max_response_length=8",
        "trainer.total_training_steps=1", "trainer.test_freq=1", f"trainer.default_local_dir={tmp_path / 'run'}"))
    assert 0.0 <= result.metrics["val-core/openai/gsm8k/acc/mean@1"] <= 1.0
    assert result.metrics["response_length/mean"] > 0
