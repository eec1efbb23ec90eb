"""Streaming a sharded model's full weights: in size-bounded buckets gathered with one collective each
(for the rollout engine's weight sync), or to rank 0 only (checkpoints, HF export), never all at once."""

from __future__ import annotations

from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn


def _is_dtensor(t) -> bool:
    return hasattr(t, "full_tensor")


def _shard0_rows(t) -> bool:
    """A DTensor sharded on dim 0 over a 1-D mesh (FSDP2's layout): gatherable by flat concatenation."""
    from torch.distributed.tensor import Shard

    placements = getattr(t, "placements", ())
    return len(placements) == 1 and isinstance(placements[0], Shard) and placements[0].dim == 0 and t.dim() > 0


def _plan_buckets(state: dict, bucket_bytes: int, dtype: torch.dtype | None) -> list[list[str]]:
    """Names per bucket, by full (gathered) size in the target dtype; a bigger tensor goes alone."""
    buckets, bucket, size = [], [], 0
    for name, t in state.items():
        itemsize = (torch.empty((), dtype=dtype).element_size()
                    if dtype is not None and t.is_floating_point() else t.element_size())
        nbytes = t.numel() * itemsize
        if bucket and size + nbytes > bucket_bytes:
            buckets.append(bucket)
            bucket, size = [], 0
        bucket.append(name)
        size += nbytes
    if bucket:
        buckets.append(bucket)
    return buckets


def _gather_flat(shards: list, device) -> list[torch.Tensor]:
    """Full tensors of dim-0 shards, with one all-gather for the whole list: each rank packs its shards,
    padded to torch.chunk's row counts, into one flat buffer."""
    world = dist.get_world_size()
    rows = [-(-t.shape[0] // world) for t in shards]  # rows of each rank's (padded) shard
    row_numel = [int(torch.Size(t.shape[1:]).numel()) for t in shards]
    dtype = shards[0].dtype
    segment = sum(r * n for r, n in zip(rows, row_numel))
    local = torch.zeros(segment, dtype=dtype, device=device)
    offset = 0
    for t, r, n in zip(shards, rows, row_numel):
        piece = t.to_local().to(device).reshape(-1)
        local[offset:offset + piece.numel()] = piece
        offset += r * n
    gathered = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(gathered, local)
    out = []
    offset = 0
    for t, r, n in zip(shards, rows, row_numel):
        parts = [g[offset:offset + r * n].view(r, *t.shape[1:]) for g in gathered]
        out.append(torch.cat(parts)[:t.shape[0]])
        offset += r * n
    return out


def full_weight_buckets(model: nn.Module, bucket_bytes: int, dtype: torch.dtype | None = None,
                        device: torch.device | str | None = None) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """(name, full tensor) lists of at most `bucket_bytes` each, gathered one bucket at a time with one
    collective per bucket and dtype (shards are cast before they travel: half the bytes in bf16). Every
    rank of the FSDP group must consume the same buckets in the same order."""
    state = {k: v.detach() for k, v in model.state_dict().items()}
    for names in _plan_buckets(state, bucket_bytes, dtype):
        tensors = {}
        by_dtype: dict[torch.dtype, list[str]] = {}
        for name in names:
            t = state[name]
            if dtype is not None and t.is_floating_point():
                t = t.to(dtype)
            if _is_dtensor(t) and _shard0_rows(t) and dist.is_initialized():
                by_dtype.setdefault(t.dtype, []).append(name)
                tensors[name] = t
            elif _is_dtensor(t):
                tensors[name] = t.full_tensor()
            else:
                tensors[name] = t.to(device) if device is not None else t
        for group in by_dtype.values():
            target = device if device is not None else tensors[group[0]].to_local().device
            for name, full in zip(group, _gather_flat([tensors[n] for n in group], target)):
                tensors[name] = full
        yield [(name, tensors[name]) for name in names]


def full_weights(model: nn.Module, bucket_bytes: int, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """The same weights one (name, tensor) at a time, for a loader that takes an iterator."""
    for bucket in full_weight_buckets(model, bucket_bytes, dtype, device):
        yield from bucket
        bucket.clear()  # the consumer has copied them; drop this bucket before gathering the next


def rank0_state_dict(model: nn.Module, dtype: torch.dtype | None = None,
                     bucket_bytes: int = 512 << 20) -> dict[str, torch.Tensor] | None:
    """The full state dict as host tensors on rank 0 (in `dtype` if given); None on the other ranks,
    which only take part in the gathers. Peak device memory: one bucket."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    out = {} if rank == 0 else None
    for bucket in full_weight_buckets(model, bucket_bytes, dtype):
        if out is not None:
            out.update((name, t.cpu().clone() if t.device.type == "cpu" else t.cpu()) for name, t in bucket)
    return out
