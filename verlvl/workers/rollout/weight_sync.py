"""Streams an FSDP2 (or plain) model's full weights to a rollout engine in size-bounded buckets."""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn


def full_weight_buckets(model: nn.Module, bucket_bytes: int, dtype: torch.dtype | None = None,
                        device: torch.device | str | None = None) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """(name, full tensor) lists of at most `bucket_bytes` each (a bigger tensor goes alone), gathered
    one bucket at a time, so the whole state dict is never in memory at once. Every rank of the FSDP
    group must consume the same buckets in the same order: each gather is a collective."""
    bucket: list[tuple[str, torch.Tensor]] = []
    size = 0
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)  # cast the shard, not the full tensor: half the bytes gathered in bf16
        if hasattr(tensor, "full_tensor"):  # a DTensor shard
            if device is not None and tensor.device != torch.device(device):
                tensor = tensor.to(device)  # CPU-offloaded shards gather over NCCL from the GPU
            tensor = tensor.full_tensor()
        nbytes = tensor.numel() * tensor.element_size()
        if bucket and size + nbytes > bucket_bytes:
            yield bucket
            bucket, size = [], 0
        bucket.append((name, tensor))
        size += nbytes
    if bucket:
        yield bucket


def full_weights(model: nn.Module, bucket_bytes: int, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """The same weights one (name, tensor) at a time, for a loader that takes an iterator."""
    for bucket in full_weight_buckets(model, bucket_bytes, dtype, device):
        yield from bucket
        bucket.clear()  # the consumer has copied them; drop this bucket before gathering the next
