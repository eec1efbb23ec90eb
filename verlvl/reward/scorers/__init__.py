"""Built-in scorers chosen by data_source (a registry), behind veRL's default_compute_score signature."""

from __future__ import annotations

import logging
from typing import Callable

from verlvl.utils.registry import Registry

logging.getLogger("math_verify").setLevel(logging.ERROR)  # it warns on every call that we own the timeout

SCORERS = Registry("built-in scorer", "data_source")


def register_scorer(*data_sources: str) -> Callable:
    """Register a compute_score(data_source, solution_str, ground_truth, extra_info=None) for sources."""
    return SCORERS.register(*data_sources)


def default_compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    """The scorer registered for `data_source`; an unknown source is an error listing the known ones."""
    _load_builtin_scorers()
    if data_source not in SCORERS:
        raise NotImplementedError(f"no built-in reward for data_source={data_source!r} (known: {sorted(SCORERS)}); "
                                  "pass your own with custom_reward_function.path=my_reward.py")
    return SCORERS[data_source](data_source, solution_str, ground_truth, extra_info)


def _load_builtin_scorers() -> None:
    from verlvl.reward.scorers import (boxed_math, choice, digits, geo3k, gsm8k, lmm_r1,  # noqa: F401 (registers)
                                       math_sets, shapes, zoom)
