"""The one place that decides the device: CUDA with NCCL where CUDA exists, else CPU with gloo."""

from __future__ import annotations

import functools

import torch


@functools.cache
def is_cuda_available() -> bool:
    return torch.cuda.is_available()


def get_device_name() -> str:
    """'cuda' on GPU machines, 'cpu' otherwise."""
    return "cuda" if is_cuda_available() else "cpu"


def get_dist_backend() -> str:
    """The torch.distributed backend that matches the device."""
    return "nccl" if is_cuda_available() else "gloo"


def get_torch_device():
    """The torch device module (torch.cuda or torch.cpu) for calls like synchronize()."""
    return getattr(torch, get_device_name())
