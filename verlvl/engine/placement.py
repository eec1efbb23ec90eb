"""The device boundary: a DataProto entering a worker method goes to the worker's device once; what the
method returns comes back on the CPU. Also the CUDA caching allocator's housekeeping."""

from __future__ import annotations

import functools
import gc

import torch

from verlvl.protocol import DataProto


def to_device(data: DataProto, device: torch.device | str) -> DataProto:
    """A DataProto whose tensors are on `device` (the caller's object is left as it is)."""
    if data.batch is None:
        return data
    moved = DataProto(batch=data.batch, non_tensor_batch=data.non_tensor_batch, meta_info=data.meta_info)
    non_blocking = torch.device(device).type == "cuda"
    return moved.to(device, non_blocking=non_blocking) if _needs_move(data, device) else moved


def _needs_move(data: DataProto, device) -> bool:
    target = torch.device(device)
    return any(t.device != target for t in data.batch.values())


def to_host(value):
    """Tensors (also inside a DataProto, dict, list or tuple) on the CPU; everything else unchanged."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu() if value.device.type != "cpu" else value
    if isinstance(value, DataProto):
        if value.batch is not None and any(t.device.type != "cpu" for t in value.batch.values()):
            value.to("cpu")
        return value
    if isinstance(value, dict):
        return {k: to_host(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_host(v) for v in value)
    return value


def device_boundary(method):
    """For worker methods: DataProto arguments to `self.device`, the result to the CPU."""

    @functools.wraps(method)
    def inner(self, *args, **kwargs):
        args = tuple(to_device(a, self.device) if isinstance(a, DataProto) else a for a in args)
        kwargs = {k: to_device(v, self.device) if isinstance(v, DataProto) else v for k, v in kwargs.items()}
        return to_host(method(self, *args, **kwargs))

    return inner


def empty_cache(device: torch.device | str) -> None:
    """Give the CUDA caching allocator's free blocks back (so a colocated engine or model can take them)."""
    if torch.device(device).type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()


def memory_metrics(device: torch.device | str, prefix: str = "perf") -> dict[str, float]:
    """Peak and current allocated GiB on a CUDA device since the last reset (empty on CPU)."""
    if torch.device(device).type != "cuda":
        return {}
    gib = 1 << 30
    return {f"{prefix}/max_memory_allocated_gb": torch.cuda.max_memory_allocated(device) / gib,
            f"{prefix}/max_memory_reserved_gb": torch.cuda.max_memory_reserved(device) / gib}
