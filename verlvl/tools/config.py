"""Tools from actor_rollout_ref.rollout.multi_turn.tool_config_path: veRL's YAML (tools: class_name, config, tool_schema)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from omegaconf import OmegaConf

from verlvl.tools.base import BaseTool, ToolSchemaError

# veRL's own tool classes that verlvl implements: a veRL tool config naming them works unchanged.
VERL_ALIASES = {
    "verl.tools.image_zoom_in_tool.ImageZoomInTool": "verlvl.tools.builtin.ImageZoomInTool",
    "verl.tools.geo3k_tool.Geo3kTool": "verlvl.tools.builtin.Geo3kTool",
}


class ToolConfigError(ValueError):
    """A tool config that cannot be used; the message names the file, the entry and the fix."""


def load_tool_class(class_name: str, where: str) -> type:
    """`package.module.Class`, or `path/to/file.py:Class` for a user's file."""
    class_name = VERL_ALIASES.get(class_name, class_name)
    if ":" in class_name:
        path, name = class_name.rsplit(":", 1)
        file = Path(path).expanduser().resolve()
        if not file.is_file():
            raise ToolConfigError(f"{where}: class_name {class_name!r}: no file {file}")
        module_name = f"verlvl_user_tool_{abs(hash(str(file)))}"
        module = sys.modules.get(module_name)
        if module is None:
            spec = importlib.util.spec_from_file_location(module_name, file)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules[module_name] = module
    else:
        module_name, _, name = class_name.rpartition(".")
        if not module_name:
            raise ToolConfigError(f"{where}: class_name {class_name!r} must be package.module.Class or file.py:Class")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ToolConfigError(f"{where}: class_name {class_name!r}: cannot import {module_name} ({e})") from e
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        raise ToolConfigError(f"{where}: class_name {class_name!r}: {module.__name__} has no class {name!r}")
    return cls


def load_tools(tool_config_path: str) -> list[BaseTool]:
    """One instance per entry of the YAML's `tools` list; names must be unique."""
    file = Path(tool_config_path).expanduser()
    where = f"actor_rollout_ref.rollout.multi_turn.tool_config_path={tool_config_path}"
    if not file.is_file():
        raise ToolConfigError(f"{where}: no such file")
    entries = OmegaConf.to_container(OmegaConf.load(file), resolve=True).get("tools")
    if not isinstance(entries, list) or not entries:
        raise ToolConfigError(f"{where}: the file must have a non-empty `tools:` list")
    tools, names = [], set()
    for k, entry in enumerate(entries):
        at = f"{where} tools[{k}]"
        if not isinstance(entry, dict) or "class_name" not in entry:
            raise ToolConfigError(f"{at}: each tool needs class_name (and config, tool_schema)")
        config = dict(entry.get("config") or {})
        kind = config.get("type", "native")
        if kind != "native":
            raise ToolConfigError(f"{at}: config.type={kind!r}: only native tools are supported (mcp is not)")
        cls = load_tool_class(str(entry["class_name"]), at)
        try:
            tool = cls(config=config, tool_schema=entry.get("tool_schema"))
        except ToolSchemaError as e:
            raise ToolConfigError(f"{at}: {e}") from e
        if tool.name in names:
            raise ToolConfigError(f"{at}: two tools are named {tool.name!r}")
        names.add(tool.name)
        tools.append(tool)
    return tools
