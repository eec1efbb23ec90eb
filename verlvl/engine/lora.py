"""LoRA adapters on the language model, injected in place (peft): the model keeps its class, so generate,
our forwards and FSDP2's wrapping see the same modules. Only adapters train; the reference is the same
model with its adapters switched off; an engine that holds its own weights gets them merged; the export
is a peft adapter folder."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

VISION_TOWER = r".*\bvisual\b.*"  # Qwen-VL's vision tower (and its merger): never adapted by default
ADAPTER_WEIGHTS = "adapter_model.safetensors"


@dataclass(frozen=True)
class LoraSpec:
    """veRL's keys: actor_rollout_ref.model.{lora_rank, lora_alpha, target_modules, exclude_modules,
    lora_adapter_path} (and critic.model.*)."""

    rank: int
    alpha: float = 16
    target_modules: str | tuple[str, ...] = "all-linear"
    exclude_modules: str | None = None  # a regex over module names; None: the vision tower
    adapter_path: str | None = None

    def peft_config(self):
        from peft import LoraConfig

        targets = self.target_modules if isinstance(self.target_modules, str) else list(self.target_modules)
        return LoraConfig(r=self.rank, lora_alpha=self.alpha, target_modules=targets, lora_dropout=0.0,
                          bias="none", exclude_modules=self.exclude_modules or VISION_TOWER)


def lora_spec(model_config) -> LoraSpec | None:
    """The LoRA of a model config (None when lora_rank is 0)."""
    if not getattr(model_config, "lora_rank", 0):
        return None
    targets = model_config.target_modules
    return LoraSpec(int(model_config.lora_rank), float(model_config.lora_alpha),
                    targets if isinstance(targets, str) else tuple(targets), model_config.exclude_modules,
                    model_config.lora_adapter_path)


def add_adapters(model: nn.Module, spec: LoraSpec) -> nn.Module:
    """Inject the adapters (lora_B zero: the model computes what it did) and make them the only trainable
    parameters. On a model built on the meta device, call inside engine.loading.parameters_on_meta()."""
    from peft import inject_adapter_in_model

    inject_adapter_in_model(spec.peft_config(), model)
    trainable = total = 0
    for name, param in model.named_parameters():
        param.requires_grad_(".lora_" in name)
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    if trainable == 0:
        raise ValueError(f"actor_rollout_ref.model.target_modules={spec.target_modules!r} matched no layer of the "
                         "language model; use all-linear or names such as [q_proj, v_proj]")
    model.lora_spec = spec
    model.lora_summary = (f"LoRA rank {spec.rank}: trainable params: {trainable:,} of {total:,} "
                          f"({100 * trainable / total:.2f}%)")
    return model


def load_adapter(model: nn.Module, path: str) -> None:
    """Adapter weights saved by peft (or export_adapter) into an injected model."""
    from safetensors.torch import load_file

    file = Path(path) / ADAPTER_WEIGHTS
    if not file.is_file():
        raise FileNotFoundError(f"actor_rollout_ref.model.lora_adapter_path={path}: no {ADAPTER_WEIGHTS} there")
    state = {_injected_name(k): v for k, v in load_file(str(file)).items()}
    missing = set(state) - {n for n, _ in model.named_parameters()}
    if missing:
        raise ValueError(f"lora_adapter_path={path}: {len(missing)} adapter weight(s) fit no layer of this model "
                         f"(e.g. {min(missing)}); was it trained with other target_modules or another model?")
    model.load_state_dict(state, strict=False)


def has_adapters(model: nn.Module) -> bool:
    return getattr(model, "lora_spec", None) is not None


@contextlib.contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """The base model: every adapter layer computes its base layer only, for the duration."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield model
    finally:
        for layer in layers:
            layer.enable_adapters(True)  # which also marks the adapter weights trainable, as they are


def merged_weights(model: nn.Module, named: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
    """The full weights `named` yields (engine.state_dict.full_weights) with each adapted layer folded into
    its base weight, W + scaling * B @ A, under the base model's names: what an engine without LoRA loads."""
    from peft.tuners.lora import LoraLayer

    scaling = {name: layer.scaling["default"] for name, layer in model.named_modules() if isinstance(layer, LoraLayer)}
    pending: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in named:
        module, kind = _lora_part(name)
        if module is None:
            yield base_name(name), tensor  # a bias of an adapted layer keeps its place under the base name
            continue
        parts = pending.setdefault(module, {})
        parts[kind] = tensor
        if len(parts) == 3:
            del pending[module]
            base = parts["base"]
            delta = (parts["B"].float() @ parts["A"].float()) * scaling[module]
            yield f"{module}.weight", (base.float() + delta).to(base.dtype)
    if pending:
        raise RuntimeError(f"adapter parts missing for {sorted(pending)[:3]} while merging LoRA weights")


def _lora_part(name: str) -> tuple[str | None, str | None]:
    """('x.q_proj', 'base' | 'A' | 'B') for an adapted layer's tensors, (None, None) for any other."""
    for suffix, kind in ((".base_layer.weight", "base"), (".lora_A.default.weight", "A"),
                         (".lora_B.default.weight", "B")):
        if name.endswith(suffix):
            return name[:-len(suffix)], kind
    return None, None


def base_name(name: str) -> str:
    """A parameter's name in the model without adapters."""
    return name.replace(".base_layer.", ".")


def adapter_state_dict(named: Iterable[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """peft's on-disk names for the adapter tensors among `named` (full tensors)."""
    return {_peft_name(name): tensor for name, tensor in named if ".lora_" in name}


def _peft_name(name: str) -> str:
    return "base_model.model." + name.replace(".default.", ".")


def _injected_name(peft_name: str) -> str:
    name = peft_name.removeprefix("base_model.model.")
    for part in ("lora_A", "lora_B"):
        name = name.replace(f".{part}.weight", f".{part}.default.weight")
    return name


def export_adapter(path: str | Path, spec: LoraSpec, state: dict[str, torch.Tensor], base_model: str) -> None:
    """A folder `PeftModel.from_pretrained(base, path)` loads: adapter_config.json and the weights."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = spec.peft_config()
    config.base_model_name_or_path = base_model
    config.save_pretrained(str(path))
    save_file({k: v.contiguous() for k, v in state.items()}, str(path / ADAPTER_WEIGHTS))
    json.loads((path / "adapter_config.json").read_text())  # written and readable
