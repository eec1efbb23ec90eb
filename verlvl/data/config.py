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
    reward_fn_key: str = "data_source"  # the column passed to the reward function as data_source

    def __post_init__(self):
        if self.truncation not in TRUNCATION_MODES:
            raise ValueError(f"data.truncation={self.truncation!r}: use one of {TRUNCATION_MODES}")
        if self.max_prompt_length <= 0:
            raise ValueError(f"data.max_prompt_length must be positive, got {self.max_prompt_length}")
        if self.min_pixels and self.max_pixels and self.min_pixels > self.max_pixels:
            raise ValueError(f"data.min_pixels ({self.min_pixels}) is larger than data.max_pixels ({self.max_pixels})")

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | None, strict: bool = True) -> "DataConfig":
        """Build from a `data:` mapping. veRL's data keys that change nothing here (config/verl_keys.py,
        whose other values check_config refuses) are skipped; a key nobody knows is an error that
        suggests the closest one (`strict=False`: skipped; check_config reports it)."""
        from verlvl.config.verl_keys import keys_under

        cfg = dict(cfg or {})
        known, verl = {f.name for f in dataclasses.fields(cls)}, keys_under("data")
        values = {}
        for key, value in cfg.items():
            if key in known:
                values[key] = value
            elif key not in verl and strict:
                close = difflib.get_close_matches(key, sorted(known | verl), n=1)
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

