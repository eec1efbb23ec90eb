"""Trackers: console (one veRL-style line per step), a JSONL file of every step, wandb, tensorboard."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

log = logging.getLogger(__name__)
LOGGERS = ("console", "jsonl", "wandb", "tensorboard")
# The console line shows these (when present); every metric goes to the other trackers.
CONSOLE_KEYS = ("critic/score/mean", "val-core", "response_length/mean", "actor/entropy", "actor/pg_loss",
                "actor/kl_loss", "actor/grad_norm", "reward/errors", "timing_s/step", "perf/throughput")


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
        self._wandb = self._tb = None
        if "wandb" in loggers:
            import wandb

            # never block on the network: offline unless the user chose a mode
            os.environ.setdefault("WANDB_MODE", "offline" if not os.environ.get("WANDB_API_KEY") else "online")
            self._wandb = wandb.init(project=project, name=experiment, config=config, dir=str(self.log_dir),
                                     settings=wandb.Settings(init_timeout=30))
        if "tensorboard" in loggers:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.log_dir / "tensorboard"))

    def log(self, data: dict, step: int) -> None:
        clean = {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in data.items()}
        if "console" in self.loggers:
            self.console(format_console_line(step, clean))
        if self._jsonl is not None:
            finite = {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in clean.items()}
            self._jsonl.write(json.dumps({"step": step, **finite}) + "\n")
            self._jsonl.flush()
        if self._wandb is not None:
            self._wandb.log(clean, step=step)
        if self._tb is not None:
            for k, v in clean.items():
                if isinstance(v, float):
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        if self._wandb is not None:
            self._wandb.finish()
        if self._tb is not None:
            self._tb.close()
