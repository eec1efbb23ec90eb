"""actor_rollout_ref.model.external_lib (veRL's key): a user module, imported once per process, that registers
estimators, losses and reward managers before anything looks them up."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

KEY = "actor_rollout_ref.model.external_lib"
_IMPORTED: dict[str, ModuleType] = {}  # what was named (a module name or a resolved file path) -> its module


class ExternalLibError(ValueError):
    """The module named by external_lib could not be imported; the message names the key and the module."""


def is_file(entry: str) -> bool:
    """A path to a .py file (verlvl's addition) rather than a module name (veRL's form)."""
    return entry.endswith(".py") or "/" in entry or "\\" in entry


def resolve(entry: str) -> str:
    """The absolute path of a file entry (so worker processes in other folders find it); a module name as is."""
    return str(Path(entry).expanduser().resolve()) if is_file(entry) else entry


def import_external_lib(value: str | list[str] | None, key: str = KEY) -> list[ModuleType]:
    """Import each module named by `value` (a module name importable on sys.path, a path to a .py file, or a
    list of them) unless this process already did; returns the modules."""
    entries = value if isinstance(value, (list, tuple)) else [value]
    modules = []
    for entry in entries:
        if entry is None or entry == "":
            continue
        if not isinstance(entry, str):
            raise ExternalLibError(f"{key}={entry!r}: give a module name or a path to a .py file")
        name = resolve(entry)
        if name not in _IMPORTED:
            _IMPORTED[name] = _import_file(name, key, entry) if is_file(entry) else _import_module(name, key)
        modules.append(_IMPORTED[name])
    return modules


def _import_module(name: str, key: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and name.split(".")[0] == e.name.split(".")[0]:
            raise ExternalLibError(f"{key}={name}: no module {e.name!r} on this process's sys.path (set PYTHONPATH, "
                                   "so every worker process finds it too, or give a path to the .py file)") from e
        raise ExternalLibError(f"{key}={name}: importing module {name!r} failed: {e}") from e
    except Exception as e:
        raise ExternalLibError(f"{key}={name}: importing module {name!r} raised {type(e).__name__}: {e}") from e


def _import_file(path: str, key: str, given: str) -> ModuleType:
    file = Path(path)
    if not file.is_file():
        raise ExternalLibError(f"{key}={given}: no such file ({file})")
    module_name = f"verlvl_external_{file.stem}_{hashlib.sha1(path.encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[module_name]
        raise ExternalLibError(f"{key}={given}: importing module {file.name} raised {type(e).__name__}: {e}") from e
    return module
