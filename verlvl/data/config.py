"""DataConfig: the `data.*` keys (veRL's names), typed and validated once."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Mapping

from verlvl.config.defaults import YAML, yaml_default, yaml_defaults

TRUNCATION_MODES = ("error", "left", "right")


@dataclass(frozen=True)
@yaml_defaults("data")  # `= YAML`: conf/data/default.yaml's default, written there only
class DataConfig:
    train_files: tuple[str, ...] = field(default_factory=lambda: _as_paths(yaml_default("data.train_files")))
    val_files: tuple[str, ...] = field(default_factory=lambda: _as_paths(yaml_default("data.val_files")))
    prompt_key: str = YAML
    image_key: str = YAML
    max_prompt_length: int = YAML
    max_response_length: int = YAML
    train_batch_size: int = YAML
    gen_batch_size: int | None = YAML  # prompts per generation batch under dynamic sampling (None: train's)
    val_batch_size: int | None = YAML
    truncation: str = YAML
    filter_overlong_prompts: bool = YAML
    return_raw_chat: bool = YAML
    shuffle: bool = YAML
    seed: int = YAML
    min_pixels: int | None = YAML
    max_pixels: int | None = YAML
    dataloader_num_workers: int = YAML
    train_max_samples: int = YAML
    val_max_samples: int = YAML
    apply_chat_template_kwargs: dict = YAML
    reward_fn_key: str = YAML  # the column passed to the reward function as data_source

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

