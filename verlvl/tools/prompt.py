"""The tools' system prompt in Qwen's (hermes) words, for chat templates that do not render `tools` (Qwen2.5-VL's)."""

from __future__ import annotations

import json


def tool_system_prompt(schemas: list[dict], preamble: str = "") -> str:
    """What Qwen2.5's template writes into the system message for `tools`: the schemas in <tools></tools> and the
    <tool_call> format. Put it in the data's system message when the model's template ignores `tools`."""
    lines = "\n".join(json.dumps(s, ensure_ascii=False) for s in schemas)
    head = f"{preamble}\n\n" if preamble else ""
    return (f"{head}# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            f"You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{lines}\n</tools>\n\n"
            "For each function call, return a json object with function name and arguments within "
            "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
            "<args-json-object>}\n</tool_call>")
