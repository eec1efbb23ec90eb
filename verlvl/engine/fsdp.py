"""FSDP2 sharding (vision blocks, vision tower, decoder layers, root) with its offload switches, the
gradient norm over shards wherever they live, and moving parameters or optimizer state off the device.

Three switches, as in veRL: `param_offload` keeps the sharded parameters (and gradients) on the host
between worker calls, `optimizer_offload` keeps Adam's moments on the host between updates, and
`offload_policy` is FSDP2's CPUOffloadPolicy (parameters stay on the host and each layer is copied in
for its compute; the optimizer then steps on the host). All three are CUDA-only: on CPU nothing moves.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.distributed as dist
from torch import nn


def fsdp_kwargs(on_cuda: bool, mixed_precision: bool = True, offload_policy: bool = False,
                param_dtype: torch.dtype = torch.bfloat16, reduce_dtype: torch.dtype = torch.float32) -> dict:
    """fully_shard's keyword arguments: param_dtype compute (bf16) with reduce_dtype gradient reduction (fp32),
    and the offload policy."""
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy

    kwargs = {}
    if on_cuda and mixed_precision:
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)
    if on_cuda and offload_policy:
        kwargs["offload_policy"] = CPUOffloadPolicy(pin_memory=True)
    return kwargs


def compute_dtype(mixed_precision: tuple[torch.dtype, torch.dtype] | None, device: torch.device,
                  sharded: bool) -> torch.dtype:
    """The dtype a model's forward computes in: FSDP2's param_dtype where its mixed-precision policy applies
    (CUDA, sharded), else fp32. `mixed_precision`: FSDPConfig.dtypes()."""
    return mixed_precision[0] if mixed_precision is not None and device.type == "cuda" and sharded else torch.float32


def vision_tower(model: nn.Module) -> nn.Module | None:
    inner = getattr(model, "model", model)
    return getattr(inner, "visual", None)


def freeze_vision_tower(model: nn.Module) -> int:
    """requires_grad=False on the vision tower; returns how many parameters were frozen."""
    tower = vision_tower(model)
    if tower is None:
        raise ValueError("actor.freeze_vision_tower=true but the model has no vision tower")
    n = 0
    for p in tower.parameters():
        p.requires_grad_(False)
        n += p.numel()
    return n


def apply_fsdp2(model: nn.Module, **kwargs) -> nn.Module:
    """Shard each block named in the model's _no_split_modules (vision blocks, decoder layers), the
    vision tower as its own unit (so a dummy pass can run it alone), then the root. `kwargs`: fsdp_kwargs()."""
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    no_split = set(getattr(model, "_no_split_modules", None) or [])
    for module in list(model.modules()):
        if type(module).__name__ in no_split:
            fully_shard(module, **kwargs)
    tower = vision_tower(model)
    if tower is not None:
        fully_shard(tower, **kwargs)
    fully_shard(model, **kwargs)
    if hasattr(model, "generate"):
        # generate() runs the vision tower before any root forward; as an FSDP forward method it gets
        # the root's lazy init and unshard first.
        register_fsdp_forward_method(model, "generate")
    return model


def fsdp_modules(model: nn.Module) -> list:
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


@contextlib.contextmanager
def unsharded(model: nn.Module):
    """All parameters gathered for the duration (for generate: no collective per decoding step)."""
    modules = fsdp_modules(model)
    for m in modules:
        m.set_reshard_after_forward(False)
        m.unshard()
    try:
        yield model
    finally:
        for m in modules:
            m.reshard()
            m.set_reshard_after_forward(True)


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


@torch.no_grad()
def clip_grad_norm(parameters, max_norm: float) -> torch.Tensor:
    """Scale the gradients so their total norm (over all shards of all ranks) is at most max_norm; return
    that norm before scaling. Works wherever the gradient shards live (device, or host under offload):
    each rank sums its shards' squares, one all-reduce adds the ranks (gloo for host tensors)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    device = _local(grads[0]).device
    squares = torch.stack([_local(g).float().pow(2).sum().to(device) for g in grads]).sum()
    if dist.is_initialized() and dist.get_world_size() > 1 and hasattr(grads[0], "to_local"):
        dist.all_reduce(squares)
    total = squares.sqrt()
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        _local(g).mul_(coef.to(_local(g).device))
    return total


def is_finite(norm: torch.Tensor) -> bool:
    return math.isfinite(float(norm))


@torch.no_grad()
def move_model(model: nn.Module, device: torch.device | str) -> None:
    """Parameters, gradients and buffers of a (sharded) model to `device`: FSDP2 moves the shards."""
    model.to(device, non_blocking=torch.device(device).type == "cuda")
    for p in model.parameters():
        if p.grad is not None and p.grad.device != p.device:
            p.grad = p.grad.to(p.device, non_blocking=True)


@torch.no_grad()
def move_optimizer_state(optimizer: torch.optim.Optimizer, device: torch.device | str) -> None:
    """Adam's moments to `device` (the step counters stay where the optimizer keeps them)."""
    for state in optimizer.state.values():
        for key, value in state.items():
            if key != "step" and isinstance(value, torch.Tensor) and value.device != torch.device(device):
                state[key] = value.to(device, non_blocking=True)
