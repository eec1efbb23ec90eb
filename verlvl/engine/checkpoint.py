"""Checkpoints: sharded model + optimizer (torch DCP), scheduler and RNG per rank; the HF export gathered
to rank 0 only, in the checkpoint's own dtype (bf16 for the released Qwen-VL models)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from verlvl.engine.lora import adapter_state_dict, export_adapter, has_adapters, merged_weights
from verlvl.engine.state_dict import rank0_state_dict


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def save_sharded(path: str, model, optimizer=None, scheduler=None) -> None:
    """Every rank writes its shards; `path` is shared by all ranks (one folder per checkpoint)."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    model_state, optim_state = get_state_dict(model, optimizer if optimizer is not None else [])
    state = {"model": model_state}
    if optimizer is not None:
        state["optimizer"] = optim_state
    dcp.save(state, checkpoint_id=str(folder / "dcp"))
    extra = {"rng_cpu": torch.get_rng_state(), "scheduler": scheduler.state_dict() if scheduler else None}
    if torch.cuda.is_available():
        extra["rng_cuda"] = torch.cuda.get_rng_state_all()
    torch.save(extra, folder / f"extra_rank{_rank()}.pt")


def load_sharded(path: str, model, optimizer=None, scheduler=None) -> None:
    folder = Path(path)
    if not (folder / "dcp").exists():
        raise FileNotFoundError(f"no sharded checkpoint in {folder} (expected {folder / 'dcp'})")
    model_state, optim_state = get_state_dict(model, optimizer if optimizer is not None else [])
    state = {"model": model_state}
    if optimizer is not None:
        state["optimizer"] = optim_state
    dcp.load(state, checkpoint_id=str(folder / "dcp"))
    set_state_dict(model, optimizer if optimizer is not None else [], model_state_dict=state["model"],
                   optim_state_dict=state.get("optimizer", {}))
    extra_file = folder / f"extra_rank{_rank()}.pt"
    if not extra_file.exists():
        raise FileNotFoundError(f"{extra_file} is missing: the checkpoint was written by a different number of "
                                "ranks; resume with the same trainer.nnodes x trainer.n_gpus_per_node")
    extra = torch.load(extra_file, weights_only=False)
    torch.set_rng_state(extra["rng_cpu"])
    if torch.cuda.is_available() and "rng_cuda" in extra:
        torch.cuda.set_rng_state_all(extra["rng_cuda"])
    if scheduler is not None and extra.get("scheduler") is not None:
        scheduler.load_state_dict(extra["scheduler"])


def export_dtype(model) -> torch.dtype | None:
    """The dtype the checkpoint was released in (recorded by the loader), so an export is the size of the
    original; without a record, the model's config."""
    dtype = getattr(model, "release_dtype", None) or getattr(getattr(model, "config", None), "dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype if isinstance(dtype, torch.dtype) else None


def export_hf(path: str, model, tokenizer, processor=None) -> None:
    """A folder that AutoModelForImageTextToText (or AutoModelForCausalLM) loads, with tokenizer,
    processor and generation config; with LoRA the adapters merged in, and the adapter alone (a folder
    PeftModel.from_pretrained loads) in lora_adapter/. Every rank takes part in the gathers; only rank 0
    holds the result and writes."""
    lora = has_adapters(model)
    state = rank0_state_dict(model, None if lora else export_dtype(model))  # LoRA merges in full precision
    if state is None:
        return
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    if lora:  # the adapter (peft's folder) and the merged model beside it
        base = getattr(model.config, "_name_or_path", "") or ""
        export_adapter(folder / "lora_adapter", model.lora_spec, adapter_state_dict(state.items()), base)
        dtype = export_dtype(model)
        state = {name: t.to(dtype) if dtype is not None and t.is_floating_point() else t
                 for name, t in merged_weights(model, state.items())}
    model.save_pretrained(folder, state_dict=state)
    tokenizer.save_pretrained(folder)
    if processor is not None:
        from verlvl.models.processor import write_video_processor_config

        processor.save_pretrained(folder)
        write_video_processor_config(folder, processor.image_processor)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
