"""Reward functions from user files (veRL's signature) or built-in modules, checked before anything loads."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

# What a per-sample function can ask for beyond veRL's four arguments, by declaring the keyword.
# num_turns / turns / tool_calls come from multi-turn rollouts (workers/rollout/agent_rollout.py; None otherwise).
EXTRA_FIELDS = ("prompt", "images", "response_length", "response_ids", "uid", "max_response_length", "num_turns",
                "turns", "tool_calls", "turn_scores")
SAMPLE_FIELDS = ("data_source", "solution_str", "ground_truth", "extra_info")
BATCH_FIELDS = ("data_sources", "solution_strs", "ground_truths", "extra_infos")


class RewardFunctionError(ValueError):
    """A reward function that cannot be used; the message names the file, the function and the fix."""


@dataclass(frozen=True)
class RewardFunctionSpec:
    """Where a reward function lives: a file path or a module, and the function's name. Picklable,
    so scoring processes load the function themselves."""

    path: str | None = None
    module: str | None = None
    name: str = "compute_score"
    reward_kwargs: dict = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.path or self.module}:{self.name}"

    def needs_ground_truth(self) -> bool:
        """Whether the function requires a ground truth: its ground_truth(s) argument has no default."""
        params = inspect.signature(self.load()).parameters
        arg = params.get("ground_truth") or params.get("ground_truths")
        return arg is not None and arg.default is inspect.Parameter.empty

    def load(self) -> Callable:
        if self.path:
            module = _import_file(self.path)
        else:
            module = importlib.import_module(self.module)
        fn = getattr(module, self.name, None)
        if fn is None or not callable(fn):
            public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
            raise RewardFunctionError(f"{self.path or self.module} has no function {self.name!r} "
                                      f"(custom_reward_function.name); it defines {public}")
        return fn


def _import_file(path: str):
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise RewardFunctionError(f"custom_reward_function.path={path}: no such file")
    module_name = f"verlvl_custom_reward_{abs(hash(str(file)))}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[module_name]
        raise RewardFunctionError(f"custom_reward_function.path={path}: importing it raised "
                                  f"{type(e).__name__}: {e}") from e
    return module


@dataclass(frozen=True)
class RewardFunctionInfo:
    """How to call a reward function: per sample or batch, sync or async, and which extras it wants."""

    spec: RewardFunctionSpec
    is_batch: bool
    is_async: bool
    extras: tuple[str, ...]  # fields of EXTRA_FIELDS it declares by name


def inspect_reward_function(spec: RewardFunctionSpec) -> RewardFunctionInfo:
    """Load and check the function's signature (at start, before any model loads)."""
    fn = spec.load()
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError) as e:
        raise RewardFunctionError(f"{spec.describe()}: cannot read its signature ({e})") from e
    names = set(params)
    has_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    is_batch = "solution_strs" in names
    wanted = BATCH_FIELDS if is_batch else SAMPLE_FIELDS
    required_missing = [n for n in wanted[:3] if n not in names and not has_var_kw]
    if required_missing:
        form = ("compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs)" if not is_batch
                else "compute_score(data_sources, solution_strs, ground_truths, extra_infos, **kwargs)")
        raise RewardFunctionError(f"{spec.describe()}: the function does not take {required_missing}; write it "
                                  f"as {form}")
    unknown_required = [n for n, p in params.items() if p.default is inspect.Parameter.empty
                        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                        and n not in (*wanted, *EXTRA_FIELDS, *spec.reward_kwargs)]
    if unknown_required:
        raise RewardFunctionError(f"{spec.describe()}: required argument(s) {unknown_required} are neither "
                                  f"reward inputs ({', '.join(wanted + EXTRA_FIELDS)}) nor in "
                                  "custom_reward_function.reward_kwargs; give them defaults or pass them there")
    extras = tuple(n for n in EXTRA_FIELDS if n in names)
    return RewardFunctionInfo(spec, is_batch, inspect.iscoroutinefunction(fn), extras)


# Reward functions shipped with verlvl, chosen by name: custom_reward_function.path=builtin://NAME.
BUILTIN_REWARDS = {
    "remote": "verlvl.reward.remote",  # a judge over HTTP: reward_kwargs.url (+ request_timeout_s, retries, headers)
}
BUILTIN_PREFIX = "builtin://"


def builtin_reward_module(path: str) -> str | None:
    """The module behind custom_reward_function.path=builtin://NAME; None for a file path."""
    if not str(path).startswith(BUILTIN_PREFIX):
        return None
    name = str(path)[len(BUILTIN_PREFIX):]
    if name not in BUILTIN_REWARDS:
        raise RewardFunctionError(f"custom_reward_function.path={path}: no built-in reward {name!r}; the built-in "
                                  f"ones are {[BUILTIN_PREFIX + n for n in sorted(BUILTIN_REWARDS)]}")
    return BUILTIN_REWARDS[name]


def spec_from_config(custom_reward_function: dict | None) -> RewardFunctionSpec | None:
    """`custom_reward_function.{path,name,reward_kwargs}` as a spec; None when no path is set (the
    built-in scorers are used). A path `builtin://NAME` names a reward shipped with verlvl (BUILTIN_REWARDS)."""
    cfg = dict(custom_reward_function or {})
    unknown = set(cfg) - {"path", "name", "reward_kwargs"}
    if unknown:
        raise RewardFunctionError(f"unknown key(s) custom_reward_function.{sorted(unknown)[0]}; the keys are path, "
                                  "name and reward_kwargs")
    if not cfg.get("path"):
        return None
    name, kwargs = cfg.get("name") or "compute_score", dict(cfg.get("reward_kwargs") or {})
    module = builtin_reward_module(cfg["path"])
    if module == BUILTIN_REWARDS["remote"] and not kwargs.get("url"):
        raise RewardFunctionError("custom_reward_function.path=builtin://remote needs the judge's address: set "
                                  "custom_reward_function.reward_kwargs.url=http://HOST:PORT/PATH")
    if module:
        return RewardFunctionSpec(module=module, name=name, reward_kwargs=kwargs)
    return RewardFunctionSpec(path=str(cfg["path"]), name=name, reward_kwargs=kwargs)
