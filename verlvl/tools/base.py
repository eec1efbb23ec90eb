"""The tool interface (veRL's BaseTool: create / execute / calc_reward / release, all async) and what a tool returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4


class ToolSchemaError(ValueError):
    """A tool schema that is not OpenAI's function shape; the message names the tool and the field."""


@dataclass
class ToolResponse:
    """What a tool gives back to the conversation: text and/or images (PIL), veRL's field names."""

    text: str | None = None
    image: list = field(default_factory=list)

    def __post_init__(self):
        if self.image is None:
            self.image = []
        elif not isinstance(self.image, list):
            self.image = [self.image]


def check_schema(schema: Any, where: str) -> dict:
    """An OpenAI-style function schema {type: function, function: {name, description, parameters}}, checked."""
    if not isinstance(schema, dict) or schema.get("type") != "function" or not isinstance(schema.get("function"), dict):
        raise ToolSchemaError(f"{where}: tool_schema must be {{type: function, function: {{name, description, "
                              f"parameters}}}}, got {schema!r}")
    function = schema["function"]
    if not isinstance(function.get("name"), str) or not function["name"]:
        raise ToolSchemaError(f"{where}: tool_schema.function.name must be a non-empty string")
    parameters = function.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(parameters, dict) or parameters.get("type") != "object" or \
            not isinstance(parameters.get("properties", {}), dict):
        raise ToolSchemaError(f"{where}: tool_schema.function.parameters must be {{type: object, properties: {{...}}}}")
    unknown = [r for r in parameters.get("required", []) or [] if r not in parameters.get("properties", {})]
    if unknown:
        raise ToolSchemaError(f"{where}: tool_schema.function.parameters.required names {unknown}, which are not "
                              "in its properties")
    return schema


class BaseTool:
    """A tool as veRL writes one: built with (config, tool_schema); per trajectory `create` -> `execute`
    (any number of times) -> `calc_reward` -> `release`. `execute` returns (ToolResponse, step reward, metrics).
    verlvl adds `images` to create's keyword arguments: the row's prompt images (PIL), in order."""

    def __init__(self, config: dict, tool_schema: dict | None):
        self.config = dict(config or {})
        self.tool_schema = check_schema(tool_schema or self.get_openai_tool_schema(), type(self).__name__)
        self.name = self.tool_schema["function"]["name"]

    def get_openai_tool_schema(self) -> dict | None:
        return getattr(self, "tool_schema", None)

    async def create(self, instance_id: str | None = None, **kwargs) -> tuple[str, ToolResponse]:
        return instance_id or str(uuid4()), ToolResponse()

    async def execute(self, instance_id: str, parameters: dict[str, Any], **kwargs) -> tuple[ToolResponse, float, dict]:
        return ToolResponse(text="Updated the tool state."), 0.0, {}

    async def calc_reward(self, instance_id: str, **kwargs) -> float:
        return 0.0

    async def release(self, instance_id: str, **kwargs) -> None:
        return None
