"""Calling extensions written for veRL: keyword filtering by signature, a config read both ways, veRL's enum."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from enum import Enum
from typing import Any, Callable


class AdvantageEstimator(str, Enum):
    """veRL's names for the advantage estimators (register_adv_est and get_adv_estimator_fn take these or strings)."""

    GAE = "gae"
    GRPO = "grpo"
    REINFORCE_PLUS_PLUS = "reinforce_plus_plus"
    REINFORCE_PLUS_PLUS_BASELINE = "reinforce_plus_plus_baseline"
    REMAX = "remax"
    RLOO = "rloo"
    OPO = "opo"
    GRPO_PASSK = "grpo_passk"
    GPG = "gpg"
    RLOO_VECTORIZED = "rloo_vectorized"
    GRPO_VECTORIZED = "grpo_vectorized"
    OPTIMAL_TOKEN_BASELINE = "optimal_token_baseline"
    TIR_OPTIMAL_TOKEN_BASELINE = "tir_optimal_token_baseline"
    GDPO = "gdpo"


def registry_name(name_or_enum: str | Enum) -> str:
    return name_or_enum.value if isinstance(name_or_enum, Enum) else name_or_enum


def accepts(fn: Callable) -> tuple[set[str], bool]:
    """(the names fn takes as keywords, whether it takes **kwargs)."""
    params = inspect.signature(fn).parameters.values()
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names, any(p.kind == p.VAR_KEYWORD for p in params)


def call_accepting(fn: Callable, **kwargs):
    """fn(**kwargs) without the keywords fn does not declare (unless it takes **kwargs): verlvl's trainer
    passes more than veRL's (gamma, lam, ...), and a function written for veRL need not take them."""
    names, var_kw = accepts(fn)
    return fn(**(kwargs if var_kw else {k: v for k, v in kwargs.items() if k in names}))


class ConfigView(Mapping):
    """A read-only config that answers config.key, config["key"] and config.get("key", default), as veRL's
    DictConfig and dataclass configs do, over a mapping, a dataclass or an object; `extra` entries on top.
    Nested mappings and dataclasses come back as views too."""

    def __init__(self, source: Any, **extra: Any):
        object.__setattr__(self, "_source", source)
        object.__setattr__(self, "_extra", extra)

    def _keys(self) -> list[str]:
        source = self._source
        if isinstance(source, Mapping):
            keys = list(source)
        elif dataclasses.is_dataclass(source):
            keys = [f.name for f in dataclasses.fields(source)]
        else:
            keys = [k for k in vars(source) if not k.startswith("_")] if source is not None else []
        return keys + [k for k in self._extra if k not in keys]

    def __getitem__(self, key: str):
        if key in self._extra:
            value = self._extra[key]
        elif isinstance(self._source, Mapping):
            value = self._source[key]
        elif self._source is not None and hasattr(self._source, key):
            value = getattr(self._source, key)
        else:
            raise KeyError(key)
        return ConfigView(value) if isinstance(value, Mapping) or dataclasses.is_dataclass(value) else value

    def __getattr__(self, key: str):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"config has no key {key!r}; it has {sorted(self._keys())}") from None

    def __setattr__(self, key, value):
        raise TypeError("a ConfigView is read-only: the user's config is never modified")

    def __iter__(self):
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def __repr__(self) -> str:
        return f"ConfigView({dict(self)!r})"
