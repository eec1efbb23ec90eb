"""Running a parsed tool call: async with a timeout; a failure, a timeout or a bad call is an observation, not a crash."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from verlvl.tools.base import BaseTool, ToolResponse
from verlvl.tools.parser import ToolCall


@dataclass
class ToolResult:
    """What one call gave the conversation, and how it went (for rewards and metrics)."""

    name: str
    arguments: dict
    text: str
    images: list = field(default_factory=list)
    error: str = ""  # "" when the tool ran; else why the model's call failed (malformed, unknown, raised, timeout)
    latency_s: float = 0.0
    reward: float | None = None

    def summary(self) -> dict:
        """A picklable record for reward functions and logs (images as a count)."""
        return {"name": self.name, "arguments": self.arguments, "result": self.text, "error": self.error,
                "num_images": len(self.images), "latency_s": self.latency_s}


def truncate(text: str, limit: int, side: str) -> str:
    """veRL's max_tool_response_length / tool_response_truncate_side (characters; left | middle | right)."""
    if limit <= 0 or len(text) <= limit:
        return text
    if side == "left":
        return "...(truncated)" + text[-limit:]
    if side == "right":
        return text[:limit] + "...(truncated)"
    half = limit // 2
    return text[:half] + "...(truncated)..." + text[-(limit - half):]


async def run_call(tool: BaseTool | None, instance_id: str | None, call: ToolCall, timeout_s: float,
                   execute_kwargs: dict | None = None) -> ToolResult:
    if call.error or tool is None:
        error = call.error or f"there is no tool {call.name!r}"
        return ToolResult(call.name, call.arguments, f"Error: {error}", error=error)
    start = time.perf_counter()
    try:
        response, reward, _ = await asyncio.wait_for(
            tool.execute(instance_id, call.arguments, **(execute_kwargs or {})), timeout=timeout_s)
    except asyncio.TimeoutError:
        error = f"the tool {call.name!r} did not answer within {timeout_s:g} s"
        return ToolResult(call.name, call.arguments, f"Error: {error}", error=error,
                          latency_s=time.perf_counter() - start)
    except Exception as e:  # noqa: BLE001 (a tool's bug or a bad argument costs this call, not the run)
        error = f"the tool {call.name!r} raised {type(e).__name__}: {e}"
        return ToolResult(call.name, call.arguments, f"Error: {error}", error=error,
                          latency_s=time.perf_counter() - start)
    latency = time.perf_counter() - start
    if not isinstance(response, ToolResponse):
        response = ToolResponse(text=str(response))
    return ToolResult(call.name, call.arguments, response.text or "", list(response.image), latency_s=latency,
                      reward=None if reward is None else float(reward))
