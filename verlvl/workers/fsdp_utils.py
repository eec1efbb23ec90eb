"""Loading HF models for training and sharding them with FSDP2 (vision blocks, vision tower, decoder layers, root)."""

from __future__ import annotations

import contextlib
import logging

import torch
import torch.distributed as dist
from torch import nn

from verlvl.models.processor import model_type_of
from verlvl.utils.device import is_cuda_available

log = logging.getLogger(__name__)
VL_MODEL_TYPES = ("qwen2_5_vl", "qwen2_vl")


def is_vision_language(path: str) -> bool:
    return (model_type_of(path) or "") in VL_MODEL_TYPES or "vl" in (model_type_of(path) or "")


def load_model(path: str, gradient_checkpointing: bool = False, trust_remote_code: bool = False,
               attn_implementation: str | None = None) -> nn.Module:
    """A VLM through AutoModelForImageTextToText, a text model through AutoModelForCausalLM, in fp32
    (FSDP2's mixed precision casts for compute on GPU). attn_implementation: None is transformers'
    default (sdpa); flash_attention_2 needs flash-attn (the GPU image has it)."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    cls = AutoModelForImageTextToText if is_vision_language(path) else AutoModelForCausalLM
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = cls.from_pretrained(path, dtype=torch.float32, trust_remote_code=trust_remote_code, **extra)
    model.config.use_cache = False
    if gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    return model


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


def apply_fsdp2(model: nn.Module, mixed_precision: bool = True, cpu_offload: bool = False) -> nn.Module:
    """Shard each block named in the model's _no_split_modules (vision blocks, decoder layers), the
    vision tower as its own unit (so a dummy pass can run it alone), then the root. On CPU: fp32."""
    from torch.distributed.fsdp import (CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard,
                                        register_fsdp_forward_method)

    kwargs = {}
    if is_cuda_available() and mixed_precision:
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    if is_cuda_available() and cpu_offload:
        kwargs["offload_policy"] = CPUOffloadPolicy()
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


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Full (unsharded) CPU tensors on every rank."""
    out = {}
    for name, tensor in model.state_dict().items():
        if hasattr(tensor, "full_tensor"):
            tensor = tensor.full_tensor()
        out[name] = tensor.detach().cpu().clone()
    return out


def install_dummy_vision_pass(model: nn.Module) -> None:
    """When `model._verlvl_dummy_vision` is set, run the vision tower on a tiny dummy image right after
    the token embedding (where a batch with images runs it) and add 0 x its output, so a rank whose
    micro-batch is text-only does the same FSDP collectives, forward and backward, as its peers."""
    tower = vision_tower(model)
    if tower is None or not dist.is_initialized() or dist.get_world_size() == 1:
        return
    patch_dim = 3 * tower.config.temporal_patch_size * tower.config.patch_size ** 2
    merge = tower.config.spatial_merge_size

    def hook(module, args, output):
        if not getattr(model, "_verlvl_dummy_vision", False):
            return output
        pixels = torch.zeros(merge * merge, patch_dim, dtype=output.dtype, device=output.device)
        grid = torch.tensor([[1, merge, merge]], device=output.device)
        out = tower(pixels, grid_thw=grid)
        features = getattr(out, "pooler_output", None)
        features = features if features is not None else (out[0] if isinstance(out, (tuple, list)) else out)
        return output + 0.0 * features.float().sum()

    model.get_input_embeddings().register_forward_hook(hook)


@contextlib.contextmanager
def dummy_vision(model: nn.Module, active: bool):
    previous = getattr(model, "_verlvl_dummy_vision", False)
    model._verlvl_dummy_vision = active
    try:
        yield
    finally:
        model._verlvl_dummy_vision = previous
