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


def current_device() -> torch.device:
    """This process's device: its (Ray-assigned) GPU, else the CPU."""
    if is_cuda_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def get_dist_backend(cuda: bool | None = None) -> str:
    """The torch.distributed backend for the device. On CUDA the group carries CPU tensors too (metric
    reductions, offloaded gradients' norms go over gloo; CUDA tensors over NCCL): NCCL alone has no CPU path."""
    cuda = is_cuda_available() if cuda is None else cuda
    return "cpu:gloo,cuda:nccl" if cuda else "gloo"


def get_torch_device():
    """The torch device module (torch.cuda or torch.cpu) for calls like synchronize()."""
    return getattr(torch, get_device_name())
