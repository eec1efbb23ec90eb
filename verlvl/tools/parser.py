"""Qwen's (hermes) tool-call format, parsed strictly: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
OPEN, CLOSE = "<tool_call>", "</tool_call>"


@dataclass
class ToolCall:
    """One call the model wrote: a name and arguments, or `error` saying why it could not be read."""

    name: str = ""
    arguments: dict = field(default_factory=dict)
    error: str = ""
    raw: str = ""


def parse_tool_calls(text: str, known: set[str] | None = None) -> tuple[str, list[ToolCall]]:
    """(the text outside tool calls, the calls in order). Strict: a block that is not a JSON object with a
    string `name` and an object `arguments` (or names an unknown tool, or an unclosed `<tool_call>`) is a
    ToolCall with `error` set, so the model is told, and nothing raises."""
    calls = []
    for match in TOOL_CALL.finditer(text):
        calls.append(_one(match.group(1), known))
    content = TOOL_CALL.sub("", text)
    if OPEN in content:  # an opened call that never closed
        raw = content[content.index(OPEN):]
        calls.append(ToolCall(error=f"a {OPEN} was not closed by {CLOSE}", raw=raw))
    return content.strip(), calls


def _one(body: str, known: set[str] | None) -> ToolCall:
    raw = body.strip()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        return ToolCall(error=f"the tool call is not valid JSON ({e.msg} at column {e.colno})", raw=raw)
    if not isinstance(value, dict):
        return ToolCall(error="the tool call must be a JSON object {\"name\": ..., \"arguments\": {...}}", raw=raw)
    name, arguments = value.get("name"), value.get("arguments", {})
    if not isinstance(name, str) or not name:
        return ToolCall(error="the tool call has no string \"name\"", raw=raw)
    if isinstance(arguments, str):  # some models write the arguments as a JSON string
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            pass
    if not isinstance(arguments, dict):
        return ToolCall(name=name, error="the tool call's \"arguments\" must be a JSON object", raw=raw)
    extra = sorted(set(value) - {"name", "arguments"})
    if extra:
        return ToolCall(name=name, error=f"the tool call has unknown field(s) {extra}", raw=raw)
    if known is not None and name not in known:
        return ToolCall(name=name, arguments=arguments,
                        error=f"there is no tool {name!r}; the tools are {sorted(known)}", raw=raw)
    return ToolCall(name=name, arguments=arguments, raw=raw)
