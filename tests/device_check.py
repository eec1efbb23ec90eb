"""A CUDA device emulated on the CPU, to catch tensors left on the host: CUDA's mixing rules, CPU numerics.

Under `CudaEmulation`, a tensor is "on cuda" when it was moved there (`.to("cuda")`, `.cuda()`, a factory
with `device="cuda"`) or computed from such a tensor; it reports `device == cuda:0` and `is_cuda`. An op
that mixes such a tensor with a host tensor raises `HostTensorLeft`, as CUDA would, except where CUDA
allows it: 0-dim host tensors (scalars) and integer host tensors used as indices. Numbers are computed
on the CPU, so results can be compared with a plain CPU run.
"""

from __future__ import annotations

import torch
import torch.utils._pytree as pytree
from torch.overrides import TorchFunctionMode

CUDA = torch.device("cuda", 0)
_TAG = "_emulated_cuda"
# Functions that move data between devices (mixing is their purpose) or only read metadata.
_TRANSFERS = {"to", "cuda", "cpu", "copy_", "_has_compatible_shallow_copy_type", "set_", "__set__", "numpy",
              "tolist", "item", "__get__", "data_ptr", "untyped_storage", "dim", "size", "numel", "element_size",
              "is_floating_point", "__len__", "__repr__", "__format__", "__bool__", "__index__", "__int__",
              "__float__", "stride", "storage_offset", "is_contiguous", "requires_grad_", "detach_", "retain_grad",
              "register_hook", "backward", "__hash__", "__reduce_ex__", "__deepcopy__"}
_INDEXING = {"__getitem__", "__setitem__", "index_select", "gather", "index_put_", "index_put", "take_along_dim",
             "scatter", "scatter_", "scatter_add_", "index_add_", "index_fill", "index_fill_", "masked_fill"}


class HostTensorLeft(RuntimeError):
    """An op mixed a host tensor with a (emulated) CUDA tensor: on a GPU it would raise."""


def on_cuda(t) -> bool:
    return isinstance(t, torch.Tensor) and getattr(t, _TAG, False)


def _mark(t: torch.Tensor) -> torch.Tensor:
    setattr(t, _TAG, True)
    return t


def _alias(t: torch.Tensor) -> torch.Tensor:
    """A new tensor object over the same data, keeping autograd (so tagging it leaves `t` alone)."""
    return t.view_as(t) if t.dim() else t.clone()


def _is_cuda_arg(value) -> bool:
    if isinstance(value, torch.device):
        return value.type == "cuda"
    return isinstance(value, str) and value.startswith("cuda")


def _is_cpu_arg(value) -> bool:
    if isinstance(value, torch.device):
        return value.type == "cpu"
    return isinstance(value, str) and value.startswith("cpu")


def _name(func) -> str:
    return getattr(func, "__name__", str(func))


class CudaEmulation(TorchFunctionMode):
    """Use as a context manager around the code under test; `place_module` puts a model "on cuda"."""

    def __init__(self):
        super().__init__()
        self.moves_to_cuda = 0
        self.moves_to_host = 0

    def place_module(self, module: torch.nn.Module) -> torch.nn.Module:
        for t in list(module.parameters()) + list(module.buffers()):
            _mark(t)
        return module

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _name(func)
        if name == "__set__":  # `param.data = moved` (nn.Module.to): the parameter is where its data is
            attr_name = getattr(getattr(func, "__self__", None), "__name__", "")
            out = func(*args, **kwargs)
            if attr_name == "data" and len(args) > 1 and isinstance(args[0], torch.Tensor):
                if on_cuda(args[1]):
                    _mark(args[0])
                elif getattr(args[0], _TAG, False):
                    setattr(args[0], _TAG, False)
            return out
        if name == "__get__":
            owner = args[0] if args else None
            attr = getattr(func, "__self__", None)
            attr_name = getattr(attr, "__name__", "")
            if on_cuda(owner) and attr_name == "device":
                return CUDA
            if on_cuda(owner) and attr_name == "is_cuda":
                return True
            out = func(*args, **kwargs)
            if attr_name == "grad" and on_cuda(owner) and isinstance(out, torch.Tensor):
                _mark(out)  # autograd made it outside this mode, beside its parameter
            return out
        if name in ("to", "cuda", "cpu"):
            return self._move(func, name, args, kwargs)
        device = kwargs.get("device")
        if _is_cuda_arg(device):  # a factory (or new_*) asked for cuda
            out = func(*args, **{**kwargs, "device": "cpu"})
            return pytree.tree_map(lambda t: _mark(t) if isinstance(t, torch.Tensor) else t, out)
        leaves = [a for a in pytree.tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
        device_inputs = any(on_cuda(a) for a in leaves)
        if device_inputs and name not in _TRANSFERS:
            for a in leaves:
                if on_cuda(a) or a.dim() == 0 or (name in _INDEXING and not a.is_floating_point()):
                    continue
                raise HostTensorLeft(f"{name} mixes a host tensor of shape {tuple(a.shape)} ({a.dtype}) with "
                                     "cuda tensors: move it to the device first")
        out = func(*args, **kwargs)
        if device_inputs and name not in _TRANSFERS and not _is_cpu_arg(device):
            pytree.tree_map(lambda t: _mark(t) if isinstance(t, torch.Tensor) else t, out)
        return out

    def _move(self, func, name, args, kwargs):
        source = args[0]
        if name in ("cuda", "cpu"):
            target, dtype = name, None
        else:
            kwargs = {k: v for k, v in kwargs.items() if k != "copy"}
            device, dtype, _, _ = torch._C._nn._parse_to(*args[1:], **kwargs)
            if len(args) > 1 and isinstance(args[1], torch.Tensor):
                device = CUDA if on_cuda(args[1]) else torch.device("cpu")
            target = None if device is None else device.type
        moved = source.to(dtype) if dtype is not None and dtype != source.dtype else source
        if target is None:  # dtype only: stays where it is
            return _mark(moved) if on_cuda(source) else moved
        moved = _alias(moved) if moved is source else moved
        if target == "cuda":
            if not on_cuda(source):
                self.moves_to_cuda += 1
            return _mark(moved)
        if on_cuda(source):
            self.moves_to_host += 1
        return moved
