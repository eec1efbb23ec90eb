"""The defaults, written once: in conf/'s YAML. The typed configs' field defaults and the trainer's reads of keys
a hand-built config may lack come from here, so no second copy of a default can drift from the YAML."""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
from collections.abc import Mapping
from typing import Any

from omegaconf import OmegaConf

from verlvl.config.known_keys import default_tree

_MISSING = object()


@functools.lru_cache(maxsize=1)
def _resolved() -> dict:
    """default_tree() with its interpolations resolved against the other defaults (e.g. rollout.response_length
    = ${data.max_response_length} is 512 here). A run composes its own values; these are for code that builds a
    config without composing (tests, hand-built dicts)."""
    return OmegaConf.to_container(OmegaConf.create(default_tree()), resolve=True)


def yaml_default(path: str) -> Any:
    """The YAML's default of a dotted key, e.g. yaml_default("actor_rollout_ref.actor.ppo_mini_batch_size") == 256.
    A key the YAML lacks is a KeyError (a typo'd `= YAML` field fails at import, not silently). Mappings and
    lists are copies: the caller may keep or change them."""
    node: Any = _resolved()
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"{path}: not a key of conf/'s defaults")
        node = node[part]
    return copy.deepcopy(node)


def has_yaml_default(path: str) -> bool:
    try:
        yaml_default(path)
    except KeyError:
        return False
    return True


def setting(section: Mapping[str, Any] | None, path: str) -> Any:
    """section[key] where `section` is the config node at `path` minus its last part (e.g. cfg["trainer"] for
    "trainer.total_epochs"); the YAML's default when a hand-built config lacks the key. A composed config always
    has it, so this is a plain read there."""
    key = path.rsplit(".", 1)[-1]
    value = (section or {}).get(key, _MISSING)
    return yaml_default(path) if value is _MISSING else value


class _FromYaml:
    def __repr__(self) -> str:
        return "YAML"


YAML: Any = _FromYaml()  # a dataclass field's default that @yaml_defaults fills in from conf/


def yaml_defaults(prefix: str, **nested: type):
    """Class decorator (under @dataclass): each field written `name: type = YAML` gets the YAML's default at
    `prefix.name`; a field named in `nested` gets that dataclass built from the YAML's mapping there (its fields the
    YAML lacks keep their own defaults). A mapping or list default is a fresh copy per instance; a list for a
    `tuple` field is a tuple. Interpolations (`${data.max_response_length}`) are resolved against the other
    defaults. Fields with any other default keep it: the YAML has no such key."""

    def apply(cls):
        for name, annotation in inspect.get_annotations(cls).items():
            if cls.__dict__.get(name) is not YAML:
                continue
            path = f"{prefix}.{name}"
            if name in nested:
                setattr(cls, name, dataclasses.field(default_factory=functools.partial(_build, nested[name], path)))
                continue
            value = yaml_default(path)
            if isinstance(value, list) and str(annotation).startswith("tuple"):
                value = tuple(value)
            if isinstance(value, (dict, list)):
                setattr(cls, name, dataclasses.field(default_factory=functools.partial(yaml_default, path)))
            else:
                setattr(cls, name, value)
        return cls

    return apply


def _build(cls, path: str):
    tree = yaml_default(path)
    names = {f.name: f for f in dataclasses.fields(cls)}
    return cls(**{key: tuple(value) if isinstance(value, list) and str(names[key].type).startswith("tuple") else value
                  for key, value in tree.items() if key in names})
