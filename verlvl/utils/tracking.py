"""Trackers: console (one veRL-style line per step), a JSONL file of every step, wandb, tensorboard, mlflow, swanlab."""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import sys
from pathlib import Path

from verlvl.utils.tracker_backends import BACKENDS

log = logging.getLogger(__name__)
LOGGERS = ("console", "jsonl", *BACKENDS)
# The console line shows these (when present); every metric goes to the other trackers.
CONSOLE_KEYS = ("critic/score/mean", "val-core", "response_length/mean", "actor/entropy", "actor/pg_loss",
                "actor/kl_loss", "actor/grad_norm", "reward/errors", "timing_s/step", "perf/throughput")


def logger_problems(loggers) -> list[str]:
    """trainer.logger checked before anything starts: unknown trackers, and chosen ones whose package is missing."""
    from verlvl.utils.tracker_backends import PACKAGES

    loggers = [loggers] if isinstance(loggers, str) else list(loggers or [])
    problems = [f"trainer.logger has unknown tracker(s) {[x for x in loggers if x not in LOGGERS]}; use "
                f"{list(LOGGERS)}"] if any(x not in LOGGERS for x in loggers) else []
    for name in loggers:
        if name in PACKAGES and not _installed(name):
            problems.append(f"trainer.logger includes {name!r} but its package is not installed: pip install "
                            f"{PACKAGES[name]} (or pip install 'verlvl[{name}]'), or drop {name!r} from trainer.logger")
    return problems


def _installed(module: str) -> bool:
    if module in sys.modules:  # imported already (None: known to be missing)
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None


def format_console_line(step: int, metrics: dict) -> str:
    """veRL's form: `step:N - key:value - key:value ...` with the key metrics."""
    parts = [f"step:{step}"]
    for key in sorted(metrics):
        if any(key.startswith(k) for k in CONSOLE_KEYS):
            value = metrics[key]
            parts.append(f"{key}:{value:.4g}" if isinstance(value, float) else f"{key}:{value}")
    return " - ".join(parts)


class Tracking:
    def __init__(self, loggers, project: str, experiment: str, log_dir: str, config: dict | None = None,
                 console=print):
        loggers = [loggers] if isinstance(loggers, str) else list(loggers or [])
        unknown = [x for x in loggers if x not in LOGGERS]
        if unknown:
            raise ValueError(f"trainer.logger has unknown tracker(s) {unknown}; use {list(LOGGERS)}")
        self.loggers, self.console = loggers, console
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.log_dir / "metrics.jsonl", "a") if "jsonl" in loggers else None
        self.backends = {}
        try:
            for name in loggers:
                if name in BACKENDS:
                    self.backends[name] = BACKENDS[name](project, experiment, self.log_dir, config)
        except BaseException:
            self.close()
            raise

    def log(self, data: dict, step: int) -> None:
        clean = {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in data.items()}
        if "console" in self.loggers:
            self.console(format_console_line(step, clean))
        if self._jsonl is not None:
            finite = {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in clean.items()}
            self._jsonl.write(json.dumps({"step": step, **finite}) + "\n")
            self._jsonl.flush()
        for backend in self.backends.values():
            backend.log(clean, step)

    def log_samples(self, step: int, samples: list[dict], tag: str = "val") -> None:
        """Sample records (veRL's dump fields; "images" as PIL images) as a table with images in wandb, images
        and text in TensorBoard, MLflow and SwanLab; the console and jsonl trackers skip them (the run's
        samples/ dumps and report.html hold them)."""
        if not samples:
            return
        for backend in self.backends.values():
            backend.log_samples(step, samples, tag)

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        for name, backend in list(self.backends.items()):
            try:
                backend.close()
            except Exception as e:  # one tracker failing to flush must not hide the others
                log.warning("closing the %s tracker failed: %s", name, e)
        self.backends = {}
