"""Which keys exist: the YAML defaults in conf/ (verlvl's keys) and veRL's table (verl_keys.py); any other
key is refused, naming it with the closest real key, and a veRL key is checked against its table entry."""

from __future__ import annotations

import difflib
import functools
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from verlvl.config.verl_keys import VERL_KEYS, keys_under

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
# Mappings whose keys are the user's (passed on as they are); the key names inside are not checked.
OPEN = frozenset({
    "actor_rollout_ref.rollout.engine_kwargs.vllm", "actor_rollout_ref.model.override_config",
    "custom_reward_function.reward_kwargs", "data.apply_chat_template_kwargs",
})


@functools.lru_cache(maxsize=1)
def default_tree() -> dict:
    """The composed defaults' key tree: each group's default.yaml under its name, then ppo_trainer.yaml's
    own keys (values unresolved: only the keys matter here)."""
    root = OmegaConf.load(CONF_DIR / "ppo_trainer.yaml")
    tree: dict[str, Any] = {}
    for entry in root.get("defaults", []):
        if isinstance(entry, str) or not hasattr(entry, "items"):
            continue
        for group, option in entry.items():
            path = CONF_DIR / str(group) / f"{option}.yaml"
            if path.is_file() and str(group) not in ("preset", "experiment"):
                tree[str(group)] = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    own = OmegaConf.to_container(root, resolve=False)
    for key in ("defaults", "hydra"):
        own.pop(key, None)
    tree.update(own)
    tree["preset"] = "none"  # conf/preset/*.yaml name themselves: which preset applied
    return tree


def key_problems(cfg: dict) -> list[str]:
    """One line per unknown key (with the closest real one) and per veRL key set to a value that would
    change something verlvl does not do (with what to do)."""
    problems: list[str] = []
    _walk(cfg, default_tree(), "", problems)
    return problems


def _walk(node: dict, schema: dict | None, prefix: str, problems: list[str]) -> None:
    for key, value in node.items():
        path = f"{prefix}{key}"
        if path in VERL_KEYS:
            entry = VERL_KEYS[path]
            if not entry.accepts(value):
                problems.append(f"{path}={_show(value)}: {entry.refusal}")
            continue
        in_schema = isinstance(schema, dict) and key in schema
        below_verl = bool(keys_under(path))
        if not in_schema and not below_verl:
            problems.append(_unknown(path, key, schema, prefix))
            continue
        if path in OPEN or not isinstance(value, dict):
            continue
        sub = schema.get(key) if in_schema else None
        if in_schema and not isinstance(sub, dict) and not below_verl:
            continue  # a value the schema leaves free in shape (e.g. null there, a mapping here)
        _walk(value, sub if isinstance(sub, dict) else {}, f"{path}.", problems)


def _unknown(path: str, key: str, schema: dict | None, prefix: str) -> str:
    known = set(schema or {}) | set(keys_under(prefix.rstrip("."))) if prefix else set(schema or {}) | {
        k.split(".")[0] for k in VERL_KEYS}
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.5)
    if close:
        hint = f"; did you mean {prefix}{close[0]}?"
    elif known and len(known) <= 30:
        hint = f"; known keys here: {', '.join(sorted(known))}"
    else:  # too many to list: say where they are
        section = path.split(".")[0]
        where = CONF_DIR / section / "default.yaml"
        hint = (f"; the keys of {prefix.rstrip('.') or 'the config'} are listed in "
                f"{where if where.is_file() else CONF_DIR / 'ppo_trainer.yaml'} (and printed by --cfg job)")
    return f"unknown key {path}{hint}"


def _show(value: Any) -> str:
    """A value as written on a command line: {enable: true}, [a, b], True."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return "null" if value is None else str(value)
