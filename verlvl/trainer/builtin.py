"""builtin:// paths: the tiny model and the built-in image data, made on first use in a cache folder."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)
PREFIX = "builtin://"
BUILTIN_TASKS = {"shapes": "verlvl.data.shapes_task", "digits": "verlvl.data.digits_task",
                 "zoom": "verlvl.data.zoom_task"}  # name -> module with write()


def cache_dir() -> Path:
    return Path(os.environ.get("VERLVL_CACHE", "~/.cache/verlvl")).expanduser()


def is_builtin(path) -> bool:
    return isinstance(path, str) and path.startswith(PREFIX)


def resolve(path: str) -> str:
    """A real path for a builtin:// one (building what is missing, and saying where); others unchanged."""
    if not is_builtin(path):
        return path
    name = path[len(PREFIX):]
    if name in ("tiny-qwen2.5-vl", "tiny-qwen2-vl"):
        from verlvl.models.tiny import TinyVLConfig, build_tiny_qwen_vl

        target = cache_dir() / "models" / name
        if not (target / "verlvl_tiny.json").exists():
            print(f"[verlvl] building the tiny model {name} into {target}")
        family = "qwen2_5_vl" if name == "tiny-qwen2.5-vl" else "qwen2_vl"
        return str(build_tiny_qwen_vl(target, TinyVLConfig(family=family)))
    task = name.split("/", 1)[0]
    if task in BUILTIN_TASKS and "/" in name:
        import importlib

        folder = cache_dir() / "data" / task
        target = folder / name.split("/", 1)[1]
        if not target.exists():
            print(f"[verlvl] writing the built-in {task} task into {folder}")
            importlib.import_module(BUILTIN_TASKS[task]).write(str(folder))
        if not target.exists():
            raise FileNotFoundError(f"{path}: the built-in {task} task has train.parquet and test.parquet")
        return str(target)
    raise ValueError(f"unknown built-in {path!r}; known: builtin://tiny-qwen2.5-vl, builtin://tiny-qwen2-vl, "
                     + ", ".join(f"builtin://{t}/{s}.parquet" for t in BUILTIN_TASKS for s in ("train", "test")))
