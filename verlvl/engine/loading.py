"""Loading a checkpoint for training so that host memory does not grow with the number of ranks: rank 0
reads the weights, the other ranks build the model on the meta device, every rank shards it, and the
weights are broadcast from rank 0 into the shards (torch's full-state-dict load with broadcast)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn

from verlvl.models.processor import model_type_of

log = logging.getLogger(__name__)
VL_MODEL_TYPES = ("qwen2_5_vl", "qwen2_vl")


def is_vision_language(path: str) -> bool:
    family = model_type_of(path) or ""
    return family in VL_MODEL_TYPES or "vl" in family


def release_dtype(path: str) -> torch.dtype | None:
    """The dtype the checkpoint's config.json names (bf16 for the released Qwen-VL models)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return None
    data = json.loads(config.read_text())
    name = data.get("dtype") or data.get("torch_dtype")
    return getattr(torch, name, None) if isinstance(name, str) else None


def model_class(path: str):
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    return AutoModelForImageTextToText if is_vision_language(path) else AutoModelForCausalLM


def load_model(path: str, gradient_checkpointing: bool = False, trust_remote_code: bool = False,
               attn_implementation: str | None = None, dtype: torch.dtype = torch.float32,
               empty: bool = False) -> nn.Module:
    """A VLM through AutoModelForImageTextToText, a text model through AutoModelForCausalLM, in `dtype`
    (fp32 master weights for training; FSDP2's mixed precision computes in bf16 on GPU).
    `empty`: the architecture only, parameters on the meta device (no weights read).
    attn_implementation: None is transformers' default (sdpa); flash_attention_2 needs flash-attn."""
    from transformers import AutoConfig

    cls = model_class(path)
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    if empty:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        with torch.device("meta"):
            model = cls.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code, **extra)
    else:
        model = cls.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code, **extra)
    model.release_dtype = release_dtype(path)
    model.config.use_cache = False
    if gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    return model


def rank_loads_weights() -> bool:
    """Whether this process reads the checkpoint: rank 0 of a group, or a lone process."""
    return not dist.is_initialized() or dist.get_rank() == 0


def load_sharded(build: Callable[[bool], nn.Module], shard: Callable[[nn.Module], nn.Module],
                 device: torch.device | str, keep_on_host: bool = False) -> nn.Module:
    """`build(empty)` makes the model (weights read, or on the meta device when `empty`); `shard` wraps it
    with FSDP2. Rank 0 reads the weights, the others build empty, and the weights reach every shard
    by broadcast from rank 0. Buffers that are not in the state dict (rotary frequencies) are broadcast
    too. `keep_on_host`: FSDP2's CPU offload policy (the shards live on the host)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    if not dist.is_initialized() or dist.get_world_size() == 1:
        model = shard(build(False))
        return model if keep_on_host else model.to(device)
    reads = dist.get_rank() == 0
    model = build(not reads)
    full = model.state_dict() if reads else {}
    model = shard(model)
    if reads:
        model.to(device)
    else:
        model.to_empty(device=device)
    set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    del full
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)
    if keep_on_host and torch.device(device).type != "cpu":
        model.to("cpu")
    return model
