"""scripts/gpu_check.py proves its wiring on the CPU: the worker class driven without Ray (the stub), two
GRPO steps with and without offload, and a 7B-shaped configuration that transformers accepts."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_gpu_check_runs_two_steps_on_the_cpu_without_ray():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--models", "tiny", "--allow-cpu",
                          "--stub-ray", "--prompts", "2", "--n", "2", "--response-length", "8", "--micro", "2"],
                         capture_output=True, text=True, timeout=280, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [(r["config"], r["offload"]) for r in rows] == [("tiny", False), ("tiny", True)]
    assert all(r["step_s"] > 0 and r["grad_norm"] > 0 for r in rows)
    assert "| tiny | True |" in out.stdout


def test_the_7b_shaped_folder_has_qwen25vl_7b_dimensions(tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(REPO / "scripts"))
    from transformers import AutoConfig

    folder = gpu_check.build_folders(tmp_path, layers=28)["7b"]
    config = AutoConfig.from_pretrained(folder)
    assert (config.text_config.hidden_size, config.text_config.num_hidden_layers, config.text_config.vocab_size) == (
        3584, 28, 152064)
    assert config.vision_config.depth == 32 and not list(folder.glob("*.safetensors"))
