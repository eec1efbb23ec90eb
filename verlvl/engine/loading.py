"""Loading a checkpoint for training so that host memory does not grow with the number of ranks: every rank
builds the model with its parameters on the meta device, shards it, and rank 0 alone reads the weights (in
the dtype they were released in) and broadcasts them into every rank's shards (torch's full-state-dict
load with broadcast). Rank 0's peak is the checkpoint once plus its shard."""

from __future__ import annotations

import contextlib
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


def override_hf_config(config, overrides: dict | None):
    """model.override_config (veRL's): each key set on the HF config; a mapping for a sub-config (text_config,
    vision_config) is set inside it, and a top-level key the text config also has is set there too (a VLM's
    language model reads its text_config)."""
    for key, value in (overrides or {}).items():
        current = getattr(config, key, None)
        if isinstance(value, dict) and hasattr(current, "to_dict"):
            override_hf_config(current, value)
            continue
        setattr(config, key, value)
        text = getattr(config, "text_config", None)
        if text is not None and text is not config and hasattr(text, key):
            setattr(text, key, value)
    return config


def load_model(path: str, gradient_checkpointing: bool = False, trust_remote_code: bool = False,
               attn_implementation: str | None = None, dtype: torch.dtype = torch.float32,
               empty: bool = False, override_config: dict | None = None) -> nn.Module:
    """A VLM through AutoModelForImageTextToText, a text model through AutoModelForCausalLM, in `dtype`
    (fp32 master weights for training; FSDP2's mixed precision computes in bf16 on GPU).
    `empty`: the architecture only, parameters on the meta device (no weights read; buffers such as the
    rotary frequencies are real, computed from the config).
    attn_implementation: None is transformers' default (sdpa); flash_attention_2 needs flash-attn."""
    from transformers import AutoConfig

    cls = model_class(path)
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    config = override_hf_config(AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code), override_config)
    if empty:
        with parameters_on_meta():
            model = cls.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code, **extra)
    else:
        model = cls.from_pretrained(path, config=config, dtype=dtype, trust_remote_code=trust_remote_code, **extra)
    model.release_dtype = release_dtype(path)
    model.config.use_cache = False
    if gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    return model


@contextlib.contextmanager
def parameters_on_meta():
    """Modules built inside get their parameters on the meta device (no memory, no initialisation work)
    and their buffers as usual."""
    register = nn.Module.register_parameter

    def on_meta(module, name, param):
        register(module, name, param)
        if param is not None and param.device.type != "meta":
            module._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def load_sharded(build: Callable[[bool], nn.Module], shard: Callable[[nn.Module], nn.Module],
                 device: torch.device | str, keep_on_host: bool = False,
                 read_weights: Callable[[], dict] | None = None) -> nn.Module:
    """`build(empty)` makes the model (weights read, or parameters on the meta device when `empty`);
    `shard` wraps it with FSDP2; `read_weights()` gives the checkpoint's state dict (default: the built
    model's), called on rank 0 only. Every rank builds empty and shards; rank 0 broadcasts the weights into
    the shards (in the dtype read_weights gives them: bf16 checkpoints travel in bf16 and are cast into the
    shards). `keep_on_host`: FSDP2's CPU offload policy (the shards live on the host)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    if not dist.is_initialized() or dist.get_world_size() == 1:
        model = shard(build(False))
        return model if keep_on_host else model.to(device)
    model = build(True)
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    full = (read_weights or (lambda: build(False).state_dict()))() if dist.get_rank() == 0 else {}
    model = shard(model)
    model.to_empty(device=device)
    set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    del full
    with torch.no_grad():
        for name, buffer in model.named_buffers():  # to_empty left them uninitialised
            buffer.copy_(buffers[name].to(buffer.device))
            dist.broadcast(buffer, src=0)
    if keep_on_host and torch.device(device).type != "cpu":
        model.to("cpu")
    return model
