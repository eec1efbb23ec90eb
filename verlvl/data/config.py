"""DataConfig: the `data.*` keys (veRL's names), typed and validated once."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Mapping

TRUNCATION_MODES = ("error", "left", "right")


@dataclass(frozen=True)
class DataConfig:
    train_files: tuple[str, ...] = ()
    val_files: tuple[str, ...] = ()
    prompt_key: str = "prompt"
    image_key: str = "images"
    max_prompt_length: int = 512
    max_response_length: int = 512
    train_batch_size: int = 8
    gen_batch_size: int | None = None  # prompts per generation batch under dynamic sampling (None: train's)
    val_batch_size: int | None = None
    truncation: str = "error"
    filter_overlong_prompts: bool = True
    return_raw_chat: bool = False
    shuffle: bool = True
    seed: int = 1
    min_pixels: int | None = None
    max_pixels: int | None = None
    dataloader_num_workers: int = 0
    train_max_samples: int = -1
    val_max_samples: int = -1
    apply_chat_template_kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.truncation not in TRUNCATION_MODES:
            raise ValueError(f"data.truncation={self.truncation!r}: use one of {TRUNCATION_MODES}")
        if self.max_prompt_length <= 0:
            raise ValueError(f"data.max_prompt_length must be positive, got {self.max_prompt_length}")
        if self.min_pixels and self.max_pixels and self.min_pixels > self.max_pixels:
            raise ValueError(f"data.min_pixels ({self.min_pixels}) is larger than data.max_pixels ({self.max_pixels})")

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | None) -> "DataConfig":
        """Build from a `data:` mapping. Keys of veRL's data config that verlvl does not use are
        accepted; a key nobody knows is an error that suggests the closest one."""
        cfg = dict(cfg or {})
        known = {f.name for f in dataclasses.fields(cls)}
        values = {}
        for key, value in cfg.items():
            if key in known:
                values[key] = value
            elif key not in VERL_KEYS_NOT_USED:
                close = difflib.get_close_matches(key, sorted(known | VERL_KEYS_NOT_USED), n=1)
                hint = f"; did you mean data.{close[0]}?" if close else ""
                raise ValueError(f"unknown key data.{key}{hint}")
        for key in ("train_files", "val_files"):
            if key in values:
                values[key] = _as_paths(values[key])
        if "apply_chat_template_kwargs" in values:
            values["apply_chat_template_kwargs"] = dict(values["apply_chat_template_kwargs"] or {})
        return cls(**values)


def _as_paths(value) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


# Accepted for compatibility with veRL configs; they have no effect here.
VERL_KEYS_NOT_USED = {
    "tokenizer", "use_shm", "reward_fn_key", "custom_cls", "return_full_prompt", "trust_remote_code", "sampler",
    "datagen", "video_key", "filter_overlong_prompts_workers", "return_multi_modal_inputs", "image_patch_size",
    "tool_config_path", "validation_shuffle", "dataloader_pin_memory",
}
