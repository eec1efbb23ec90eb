"""Trackers: veRL's console line, JSONL rows, and tensorboard, wandb, mlflow, swanlab through their offline modes."""

import json
import sys

import pytest
from PIL import Image

from verlvl.utils.tracker_backends import mlflow_key, wandb_mode
from verlvl.utils.tracking import Tracking, format_console_line, logger_problems

SAMPLES = [
    {"step": 2, "input": "what colour? <|vision_start|>" + "<|image_pad|>" * 64 + "<|vision_end|>", "output": "red", "gts": "red", "score": 1.0, "data_source": "shapes",
     "row": "test.parquet row 0", "images": [Image.new("RGB", (16, 12), "red")], "acc": 1.0, "format": 0.5},
    {"step": 2, "input": "which | shape?", "output": "a square\nmaybe", "gts": "circle", "score": 0.0,
     "data_source": "shapes", "row": "test.parquet row 1",
     "images": [Image.new("RGB", (8, 8), "blue"), Image.new("L", (8, 8), 128)], "acc": 0.0},
]


@pytest.fixture
def no_login(tmp_path, monkeypatch):
    """A home without any tracker login, and no tracker variables from the caller's environment."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home)
    for var in ("WANDB_API_KEY", "WANDB_MODE", "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "SWANLAB_MODE",
                "SWANLAB_API_KEY", "SWANLAB_LOG_DIR", "NETRC", "WANDB_DATA_DIR", "WANDB_DIR"):
        monkeypatch.delenv(var, raising=False)
    import wandb

    wandb.teardown()  # wandb keeps its settings per process: read them again from this home
    yield home
    wandb.teardown()


def test_console_line_in_verl_form():
    line = format_console_line(3, {"critic/score/mean": 0.5, "actor/pg_loss": -0.25, "internal/x": 1.0})
    assert line == "step:3 - actor/pg_loss:-0.25 - critic/score/mean:0.5"


def test_jsonl_tensorboard_and_wandb_offline_when_not_logged_in(tmp_path, no_login):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    lines = []
    run_dir = tmp_path / "run"
    tracker = Tracking(["console", "jsonl", "tensorboard", "wandb"], "proj", "exp", str(run_dir), config={"a": 1},
                       console=lines.append)
    tracker.log({"critic/score/mean": 0.5, "timing_s/step": 1.0}, step=1)
    tracker.log({"critic/score/mean": float("nan")}, step=2)
    tracker.log_samples(2, SAMPLES)
    tracker.close()
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows == [{"step": 1, "critic/score/mean": 0.5, "timing_s/step": 1.0},
                    {"step": 2, "critic/score/mean": None}]  # samples are not metrics
    assert lines == ["step:1 - critic/score/mean:0.5 - timing_s/step:1", "step:2 - critic/score/mean:nan"]

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    assert sorted(events.Tags()["images"]) == ["val/sample_0/image_0", "val/sample_1/image_0", "val/sample_1/image_1"]
    image = events.Images("val/sample_0/image_0")[0]
    assert (image.step, image.width, image.height) == (2, 16, 12)
    text = events.Tensors("val/sample_1/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "which \\| shape?" in text and "a square<br>maybe" in text and "| acc | 0.0 |" in text
    first = events.Tensors("val/sample_0/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "what colour? <\\|vision_start\\|><\\|image_pad\\|><\\|vision_end\\|>" in first  # one pad shown

    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    tables = [json.loads(p.read_text()) for p in offline[0].rglob("*.table.json")]
    assert len(tables) == 1 and tables[0]["columns"] == ["step", "data_source", "image_0", "image_1", "prompt",
                                                         "response", "ground_truth", "score", "acc", "format"]
    assert [r[5] for r in tables[0]["data"]] == ["red", "a square\nmaybe"]
    # the table's images go into the run's table artifact, staged for `wandb sync` in wandb's data folder
    staged = [Image.open(p) for p in (no_login / ".local/share/wandb/artifacts/staging").iterdir()
              if p.read_bytes()[:4] == b"\x89PNG"]
    assert sorted(i.size for i in staged) == [(8, 8), (8, 8), (16, 12)]


def test_wandb_follows_its_own_login_state(no_login, monkeypatch):
    import wandb

    assert wandb_mode(wandb) == "offline"  # nobody logged in: never block on a prompt
    (no_login / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "a" * 40 + "\n")
    (no_login / ".netrc").chmod(0o600)
    wandb.teardown()
    assert wandb_mode(wandb) is None  # `wandb login` wrote the netrc: wandb goes online on its own
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_mode(wandb) is None  # WANDB_MODE is wandb's to read
    monkeypatch.delenv("WANDB_MODE")
    (no_login / ".netrc").unlink()
    monkeypatch.setenv("WANDB_API_KEY", "b" * 40)
    wandb.teardown()
    assert wandb_mode(wandb) is None


def test_wandb_offline_setting_is_wandbs_own(no_login):
    import subprocess

    import wandb

    subprocess.run([sys.executable, "-m", "wandb", "offline"], check=True, cwd=no_login, capture_output=True)
    wandb.teardown()
    assert wandb.setup().settings.mode == "offline" and wandb_mode(wandb) is None


def test_mlflow_local_store_with_metrics_params_and_samples(tmp_path, no_login):
    pytest.importorskip("mlflow", reason="mlflow-skinny is not installed (pip install 'verlvl[mlflow]')")
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "run"
    tracker = Tracking(["mlflow"], "proj", "exp", str(run_dir), config={"trainer": {"total_epochs": 2},
                                                                          "data": {"files": ["a", "b"]}})
    tracker.log({"critic/score/mean": 0.5, "val-core/shapes/acc/mean@4": 1.0, "note": "text"}, step=3)
    tracker.log_samples(3, SAMPLES)
    run_id = tracker.backends["mlflow"].run.info.run_id
    tracker.close()
    client = MlflowClient(tracking_uri=(run_dir / "mlruns").resolve().as_uri())
    run = client.get_run(run_id)
    assert run.data.metrics == {"critic/score/mean": 0.5, "val-core/shapes/acc/mean_at_4": 1.0}
    assert run.data.params["trainer/total_epochs"] == "2" and run.data.params["data/files"] == '["a", "b"]'
    assert run.info.run_name == "exp"
    art = run_dir / "mlruns" / run.info.experiment_id / run_id / "artifacts" / "val"
    table = json.loads((art / "step_3.json").read_text())
    assert table["columns"][:5] == ["data_source", "prompt", "response", "ground_truth", "score"]
    assert [r[table["columns"].index("format")] for r in table["data"]] == [0.5, None]
    assert sorted(p.name for p in (art / "step_3").glob("*.png")) == ["sample_0_image_0.png", "sample_1_image_0.png",
                                                                      "sample_1_image_1.png"]


def test_mlflow_key_sanitised_as_verl_does():
    assert mlflow_key("val-core/x//acc/best@4/mean") == "val-core/x/acc/best_at_4/mean"


def test_swanlab_offline_run_with_samples(tmp_path, no_login):
    pytest.importorskip("swanlab", reason="swanlab is not installed (pip install 'verlvl[swanlab]')")
    run_dir = tmp_path / "run"
    tracker = Tracking(["swanlab"], "proj", "exp", str(run_dir), config={"a": {"b": 1}})
    tracker.log({"critic/score/mean": 0.5, "val-core/shapes/acc/mean@4": 1.0}, step=1)
    tracker.log_samples(1, SAMPLES)
    tracker.close()
    runs = list((run_dir / "swanlog").glob("run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.swanlab"))
    assert len(list((runs[0] / "media" / "image").rglob("*.png"))) == 3
    assert list((runs[0] / "media" / "text").rglob("*"))


def test_unknown_tracker_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"unknown tracker\(s\) \['neptune'\]"):
        Tracking(["neptune"], "p", "e", str(tmp_path))


@pytest.mark.parametrize("name,package", [("mlflow", "mlflow-skinny"), ("swanlab", "swanlab")])
def test_a_tracker_not_installed_names_the_key_and_package(tmp_path, monkeypatch, name, package):
    monkeypatch.setitem(sys.modules, name, None)  # what Python does for a package that is not there
    with pytest.raises(ImportError, match=rf"trainer.logger includes '{name}'.*pip install {package}"):
        Tracking(["jsonl", name], "p", "e", str(tmp_path))


def test_trainer_logger_checked_with_the_config(monkeypatch):
    from omegaconf import OmegaConf

    from tests.trainer.helpers import compose_config
    from verlvl.trainer.config import ConfigError, check_config

    assert logger_problems(["console", "jsonl", "wandb", "tensorboard", "mlflow", "swanlab"]) == []
    monkeypatch.setitem(sys.modules, "swanlab", None)
    cfg = OmegaConf.to_container(compose_config("trainer.logger=[console,neptune,swanlab]"), resolve=True)
    with pytest.raises(ConfigError) as e:
        check_config(cfg, resolve_builtins=False)
    assert "trainer.logger has unknown tracker(s) ['neptune']" in str(e.value)
    assert "trainer.logger includes 'swanlab' but its package is not installed: pip install swanlab" in str(e.value)
