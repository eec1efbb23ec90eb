"""Interactions (environments answering each turn), veRL's BaseInteraction shape, from multi_turn.interaction_config_path."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any
from uuid import uuid4

from omegaconf import OmegaConf

from verlvl.tools.base import ToolResponse
from verlvl.tools.config import ToolConfigError, load_tool_class


class BaseInteraction:
    """An environment for several-step tasks: after each model turn without tool calls, `generate_response` answers
    as the user (veRL: a string; verlvl also takes a ToolResponse, so an environment can show images), says whether
    the episode ends and scores the turn. A row picks its interaction with extra_info.interaction_kwargs.name."""

    def __init__(self, config: dict[str, Any]):
        self.config = dict(config or {})
        self.name: str = self.config.get("name", "interaction_agent")

    async def start_interaction(self, instance_id: str | None = None, **kwargs) -> str:
        return instance_id or str(uuid4())

    async def generate_response(self, instance_id: str, messages: list[dict[str, Any]], **kwargs
                                ) -> tuple[bool, str | ToolResponse, float, dict[str, Any]]:
        return False, "Your current result seems acceptable.", 0.0, {}

    async def calculate_score(self) -> float:
        return 0.0

    async def finalize_interaction(self, instance_id: str | None = None, **kwargs) -> None:
        return None


async def finalize(interaction, instance_id: str) -> None:
    """veRL's older interactions take no instance id."""
    params = inspect.signature(interaction.finalize_interaction).parameters
    if params:
        await interaction.finalize_interaction(instance_id)
    else:
        await interaction.finalize_interaction()


def load_interactions(path: str) -> dict[str, BaseInteraction]:
    """veRL's YAML: `interaction: [{name, class_name, config}]`; the name defaults to the class name without
    'Interaction', lower-cased."""
    where = f"actor_rollout_ref.rollout.multi_turn.interaction_config_path={path}"
    file = Path(path).expanduser()
    if not file.is_file():
        raise ToolConfigError(f"{where}: no such file")
    entries = OmegaConf.to_container(OmegaConf.load(file), resolve=True).get("interaction")
    if not isinstance(entries, list) or not entries:
        raise ToolConfigError(f"{where}: the file must have a non-empty `interaction:` list")
    out = {}
    for k, entry in enumerate(entries):
        at = f"{where} interaction[{k}]"
        if not isinstance(entry, dict) or "class_name" not in entry:
            raise ToolConfigError(f"{at}: each interaction needs class_name (and name, config)")
        cls = load_tool_class(str(entry["class_name"]), at)
        simple = str(entry["class_name"]).rsplit(".", 1)[-1].rsplit(":", 1)[-1]
        name = entry.get("name") or simple.removesuffix("Interaction").lower()
        if name in out:
            raise ToolConfigError(f"{at}: two interactions are named {name!r}")
        out[name] = cls(config={**dict(entry.get("config") or {}), "name": name})
    return out
