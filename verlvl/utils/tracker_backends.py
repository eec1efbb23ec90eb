"""The optional trackers (wandb, tensorboard, mlflow, swanlab), each imported only when trainer.logger names it."""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
from pathlib import Path

log = logging.getLogger(__name__)
# The pip package each tracker needs (what the error tells the user to install).
PACKAGES = {"wandb": "wandb", "tensorboard": "tensorboard", "mlflow": "mlflow-skinny", "swanlab": "swanlab"}
SAMPLE_TEXT_KEYS = ("input", "output", "gts", "score", "data_source", "row", "images", "step")


def require(tracker: str, module: str):
    """Import a tracker's package, or say which trainer.logger entry needs which pip package."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"trainer.logger includes {tracker!r} but its package is not installed ({e}): "
                          f"pip install {PACKAGES[tracker]}  (or pip install 'verlvl[{tracker}]'), or drop "
                          f"{tracker!r} from trainer.logger") from e


def extras_of(sample: dict) -> dict:
    """The reward breakdown of a sample record: every key beyond veRL's dump fields."""
    return {k: v for k, v in sample.items() if k not in SAMPLE_TEXT_KEYS}


_REPEATED_TOKEN = re.compile(r"(<\|[a-z_]+\|>)\1+")


def _text(value) -> str:
    """A cell's text; a run of one special token (an image's hundreds of <|image_pad|>) shown once."""
    return _REPEATED_TOKEN.sub(r"\1", value) if isinstance(value, str) else json.dumps(value, default=str)


def sample_markdown(sample: dict) -> str:
    """One sample as a small markdown table (TensorBoard's text plugin renders it)."""
    def cell(v):
        return _text(v).replace("|", "\\|").replace("\n", "<br>")
    rows = [("data_source", sample.get("data_source")), ("prompt", sample.get("input")),
            ("response", sample.get("output")), ("ground truth", sample.get("gts")), ("score", sample.get("score")),
            *extras_of(sample).items()]
    return "| field | value |\n|---|---|\n" + "\n".join(f"| {k} | {cell(v)} |" for k, v in rows)


# ---------------------------------------------------------------------------------------------- wandb
def wandb_mode(wandb) -> str | None:
    """None lets wandb decide (WANDB_MODE, `wandb offline|online`, a login through `wandb login` or
    WANDB_API_KEY); "offline" only when wandb has no credentials at all, so a run never blocks on a prompt."""
    if os.environ.get("WANDB_MODE"):
        return None
    settings = wandb.setup().settings
    if settings.mode != "online":  # `wandb offline` / `wandb disabled` in wandb's own settings file
        return None
    if settings.api_key or os.environ.get("WANDB_API_KEY"):
        return None
    try:
        from wandb.sdk.lib.wbauth import read_netrc_auth

        if read_netrc_auth(host=settings.base_url):
            return None
    except ImportError:  # another wandb layout: trust wandb to find its own login
        return None
    log.warning("wandb: not logged in (no `wandb login`, no WANDB_API_KEY): logging offline; "
                "`wandb sync` uploads the run later")
    return "offline"


class WandbBackend:
    def __init__(self, project, experiment, log_dir: Path, config):
        wandb = require("wandb", "wandb")
        self.wandb = wandb
        self.run = wandb.init(project=project, name=experiment, config=config, dir=str(log_dir),
                              mode=wandb_mode(wandb), settings=wandb.Settings(init_timeout=30))

    def log(self, data: dict, step: int) -> None:
        self.run.log(data, step=step)

    def log_samples(self, step: int, samples: list[dict], tag: str) -> None:
        n_images = max((len(s.get("images") or []) for s in samples), default=0)
        extra_keys = sorted({k for s in samples for k in extras_of(s)})
        columns = ["step", "data_source", *[f"image_{j}" for j in range(n_images)], "prompt", "response",
                   "ground_truth", "score", *extra_keys]
        table = self.wandb.Table(columns=columns)
        for s in samples:
            images = list(s.get("images") or [])
            cells = [self.wandb.Image(images[j]) if j < len(images) else None for j in range(n_images)]
            table.add_data(step, s.get("data_source"), *cells, _text(s.get("input")), _text(s.get("output")),
                           _text(s.get("gts")), s.get("score"), *[s.get(k) for k in extra_keys])
        self.run.log({f"{tag}/generations": table}, step=step)

    def close(self) -> None:
        self.run.finish()


# ---------------------------------------------------------------------------------------------- tensorboard
class TensorboardBackend:
    def __init__(self, project, experiment, log_dir: Path, config):
        require("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir / "tensorboard"))

    def log(self, data: dict, step: int) -> None:
        for k, v in data.items():
            if isinstance(v, float):
                self.writer.add_scalar(k, v, step)

    def log_samples(self, step: int, samples: list[dict], tag: str) -> None:
        import numpy as np

        for i, s in enumerate(samples):
            self.writer.add_text(f"{tag}/sample_{i}", sample_markdown(s), step)
            for j, image in enumerate(s.get("images") or []):
                self.writer.add_image(f"{tag}/sample_{i}/image_{j}", np.asarray(image.convert("RGB")), step,
                                      dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


# ---------------------------------------------------------------------------------------------- mlflow
_MLFLOW_BAD = re.compile(r"[^/\w.\- :]")


def mlflow_key(key: str) -> str:
    """veRL's sanitising: MLflow refuses '@' and a few others in metric names."""
    return _MLFLOW_BAD.sub("_", re.sub(r"/+", "/", key.replace("@", "_at_")))


def _flatten(tree, prefix="") -> dict:
    out = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}/"))
    elif isinstance(tree, (list, tuple)):
        out[prefix[:-1]] = json.dumps(tree, default=str)[:6000]
    else:
        out[prefix[:-1]] = tree[:6000] if isinstance(tree, str) else tree  # mlflow's limit on a value
    return out


class MlflowBackend:
    """MLFLOW_TRACKING_URI when set (a server, databricks, ...); otherwise a local store in the run folder
    (`mlflow ui --backend-store-uri RUN_DIR/mlruns` shows it)."""

    def __init__(self, project, experiment, log_dir: Path, config):
        mlflow = require("mlflow", "mlflow")
        self.mlflow = mlflow
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            # mlflow-skinny stores locally only as files, which mlflow 3 allows on request
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = (log_dir / "mlruns").resolve().as_uri()
        mlflow.set_tracking_uri(uri)
        run_id = os.environ.get("MLFLOW_RUN_ID")  # set by hosted platforms that start the run themselves
        if run_id:
            self.run = mlflow.start_run(run_id=run_id)
        else:
            self.run = mlflow.start_run(experiment_id=mlflow.set_experiment(project).experiment_id,
                                        run_name=experiment)
        if config:
            params = {mlflow_key(k): v for k, v in _flatten(config).items()}
            items = list(params.items())
            for i in range(0, len(items), 100):  # mlflow's batch limit
                mlflow.log_params(dict(items[i:i + 100]))

    def log(self, data: dict, step: int) -> None:
        metrics = {mlflow_key(k): v for k, v in data.items() if isinstance(v, float)}
        if metrics:
            self.mlflow.log_metrics(metrics, step=step)

    def log_samples(self, step: int, samples: list[dict], tag: str) -> None:
        columns: dict[str, list] = {"data_source": [], "prompt": [], "response": [], "ground_truth": [],
                                    "score": [], "images": []}
        for i, s in enumerate(samples):
            names = []
            for j, image in enumerate(s.get("images") or []):
                name = f"{tag}/step_{step}/sample_{i}_image_{j}.png"
                self.mlflow.log_image(image, artifact_file=name)
                names.append(name)
            for key, value in (("data_source", s.get("data_source")), ("prompt", _text(s.get("input"))),
                               ("response", s.get("output")), ("ground_truth", _text(s.get("gts"))),
                               ("score", s.get("score")), ("images", names)):
                columns[key].append(value)
            for k, v in extras_of(s).items():
                columns.setdefault(k, [None] * i).append(v)
            for values in columns.values():
                values += [None] * (i + 1 - len(values))
        self.mlflow.log_table(columns, artifact_file=f"{tag}/step_{step}.json")

    def close(self) -> None:
        self.mlflow.end_run()


# ---------------------------------------------------------------------------------------------- swanlab
def swanlab_mode() -> str | None:
    """None lets swanlab decide (SWANLAB_MODE, a `swanlab login` or SWANLAB_API_KEY); "offline" when it has
    no credentials, so a run never waits on a login prompt."""
    if os.environ.get("SWANLAB_MODE") or os.environ.get("SWANLAB_API_KEY"):
        return None
    try:
        from swanlab.sdk.internal.settings import Settings

        if Settings().api_key:
            return None
    except ImportError:
        return None
    log.warning("swanlab: not logged in (no `swanlab login`, no SWANLAB_API_KEY): logging offline; "
                "`swanlab sync` uploads the run later")
    return "offline"


class SwanlabBackend:
    def __init__(self, project, experiment, log_dir: Path, config):
        swanlab = require("swanlab", "swanlab")
        self.swanlab = swanlab
        self.run = swanlab.init(project=project, name=experiment, config=config or {},
                                log_dir=os.environ.get("SWANLAB_LOG_DIR") or str(log_dir / "swanlog"),
                                mode=swanlab_mode(), reinit=True)

    def log(self, data: dict, step: int) -> None:
        self.run.log({k: v for k, v in data.items() if isinstance(v, float)}, step=step)

    def log_samples(self, step: int, samples: list[dict], tag: str) -> None:
        images, texts = [], []
        for i, s in enumerate(samples):
            caption = f"{i}: score {s.get('score')} | {_text(s.get('output'))[:200]}"
            images += [self.swanlab.Image(image, caption=caption) for image in s.get("images") or []]
            texts.append(self.swanlab.Text(sample_markdown(s)))
        data = {f"{tag}/samples": texts}
        if images:
            data[f"{tag}/images"] = images
        self.run.log(data, step=step)

    def close(self) -> None:
        self.run.finish()


BACKENDS = {"wandb": WandbBackend, "tensorboard": TensorboardBackend, "mlflow": MlflowBackend,
            "swanlab": SwanlabBackend}
