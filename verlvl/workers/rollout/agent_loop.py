"""The multi-turn agent loop on any rollout engine: generate until a turn ends, run the tool calls it wrote, append
their results (text and images) as a tool turn through the chat template, continue; within turn and token budgets."""

from __future__ import annotations

import asyncio
import copy
import logging
import uuid
from dataclasses import dataclass, field

import torch

from verlvl.models.vision_inputs import image_inputs
from verlvl.protocol import DataProto
from verlvl.tools.base import BaseTool, ToolResponse
from verlvl.tools.interaction import finalize
from verlvl.tools.parser import parse_tool_calls
from verlvl.tools.runner import ToolResult, run_call, truncate
from verlvl.workers.config import MultiTurnConfig
from verlvl.workers.rollout.chat_turns import ChatTurns, Segment

log = logging.getLogger(__name__)


@dataclass
class TurnRequest:
    """One trajectory's next turn: its whole sequence so far (trainer view: image placeholders expanded), its
    images in order with their (t, h, w) grids, and how many new tokens it may take."""

    ids: list[int]
    images: list
    grids: list[list[int]]
    max_new_tokens: int


@dataclass
class TurnOutput:
    ids: list[int]  # sampled tokens, up to and including the end token when one was sampled
    log_probs: list[float]
    end_id: int | None  # the end (EOS) token sampled, None when the budget ran out first


@dataclass
class Trajectory:
    """The state of one sample's conversation."""

    messages: list[dict]
    prompt_ids: list[int]
    images: list
    grids: list[list[int]]
    tools_kwargs: dict
    segments: list[Segment] = field(default_factory=list)
    log_probs: list[float] = field(default_factory=list)  # one per response token (0 off the model's own)
    assistant_turns: int = 0
    user_turns: int = 0
    tool_results: list[ToolResult] = field(default_factory=list)
    done: bool = False
    truncated: bool = False  # ended by the token budget, not by the model
    prompt_images: int = 0
    prompt_messages: int = 0
    interaction: object = None  # the row's environment (extra_info.interaction_kwargs.name), if any
    interaction_kwargs: dict = field(default_factory=dict)
    interaction_id: str | None = None
    interaction_turns: int = 0
    turn_scores: list[float] = field(default_factory=list)  # the interaction's score of each of its turns

    @property
    def response_ids(self) -> list[int]:
        return [t for s in self.segments[1:] for t in s.ids]

    @property
    def response_mask(self) -> list[int]:
        return [int(s.model) for s in self.segments[1:] for _ in s.ids]


class AgentLoop:
    """Runs trajectories in lock-step rounds: every unfinished trajectory generates one turn (one engine call for
    all of them), then every tool call of the round runs concurrently. The response budget is the rollout's
    response_length: prompt + response never exceed the trainer's layout, and a trajectory whose next tool turn
    would not leave room for a reply is ended there and marked truncated."""

    def __init__(self, engine, tokenizer, processor, config: MultiTurnConfig, response_length: int,
                 tools: list[BaseTool], template_kwargs: dict | None = None, interactions: dict | None = None):
        self.engine, self.tokenizer, self.processor, self.config = engine, tokenizer, processor, config
        self.interactions = dict(interactions or {})
        self.response_length, self.tools = response_length, {t.name: t for t in tools}
        self.chat = ChatTurns(tokenizer, processor, template_kwargs)
        ip = getattr(processor, "image_processor", None)
        self.merge_size = getattr(ip, "merge_size", 2)

    # ---------------------------------------------------------------- trajectories
    def start(self, data: DataProto) -> list[Trajectory]:
        nt = data.non_tensor_batch
        if "raw_prompt" not in nt:
            raise ValueError("actor_rollout_ref.rollout.multi_turn.enable needs the chat messages of each prompt: set "
                             "data.return_raw_chat=true (as veRL's multi-turn examples do)")
        out = []
        for i in range(len(data)):
            mask = data.batch["attention_mask"][i].bool()
            prompt_ids = data.batch["input_ids"][i][mask].tolist()
            mm = nt["multi_modal_data"][i] if "multi_modal_data" in nt else None
            images = list((mm or {}).get("image") or [])
            infos = nt["multi_modal_inputs"][i] if "multi_modal_inputs" in nt else None
            grid = (infos or {}).get("image_grid_thw")
            grids = grid.tolist() if grid is not None else [self._grid(img) for img in images]
            extra = nt["extra_info"][i] if "extra_info" in nt else None
            t = Trajectory(copy.deepcopy(list(nt["raw_prompt"][i])), prompt_ids, images, grids,
                           dict((extra or {}).get("tools_kwargs") or {}), prompt_images=len(images),
                           prompt_messages=len(nt["raw_prompt"][i]))
            kwargs = dict((extra or {}).get("interaction_kwargs") or {})
            if self.interactions and kwargs:
                name = kwargs.get("name") or next(iter(self.interactions))
                if name not in self.interactions:
                    raise ValueError(f"{_where(nt, i)}: extra_info.interaction_kwargs.name={name!r} is not an "
                                     f"interaction of multi_turn.interaction_config_path ({sorted(self.interactions)})")
                t.interaction, t.interaction_kwargs = self.interactions[name], kwargs
            t.segments.append(Segment(prompt_ids, model=False))
            out.append(t)
        return out

    def _grid(self, image) -> list[int]:
        return image_inputs(self.processor, [image])["image_grid_thw"][0].tolist()

    def _count(self, grid: list[int]) -> int:
        return grid[0] * grid[1] * grid[2] // self.merge_size ** 2

    def response_len(self, t: Trajectory) -> int:
        return sum(len(s.ids) for s in t.segments[1:])

    def run(self, data: DataProto, params: dict) -> list[Trajectory]:
        trajectories = self.start(data)
        asyncio.run(self._start_interactions(trajectories))
        try:
            any_active = getattr(self.engine, "any_active", lambda active: active)
            while True:
                active = [t for t in trajectories if not t.done]
                if not any_active(bool(active)):  # hf on FSDP: ranks take turns in lockstep (agent_hf.py)
                    return trajectories
                requests = [TurnRequest([x for s in t.segments for x in s.ids], t.images, t.grids,
                                        self.response_length - self.response_len(t)) for t in active]
                outputs = self.engine.generate_turns(requests, params)
                work = [(t, self.take_turn(t, out)) for t, out in zip(active, outputs)]
                work = [(t, pending) for t, pending in work if pending]
                if work:
                    for (t, pending), answer in zip(work, asyncio.run(self._answer(work))):
                        if pending == INTERACT:
                            self.add_interaction_turn(t, *answer)
                        else:
                            self.add_tool_turn(t, answer)
        finally:
            asyncio.run(self._finalize_interactions(trajectories))

    async def _start_interactions(self, trajectories: list[Trajectory]) -> None:
        async def one(t):
            t.interaction_id = await t.interaction.start_interaction(None, **t.interaction_kwargs)

        await asyncio.gather(*(one(t) for t in trajectories if t.interaction is not None))

    async def _finalize_interactions(self, trajectories: list[Trajectory]) -> None:
        await asyncio.gather(*(finalize(t.interaction, t.interaction_id) for t in trajectories
                               if t.interaction is not None and t.interaction_id is not None))

    async def _answer(self, work: list) -> list:
        """Every trajectory's tool calls, or its interaction's response, concurrently."""
        async def one(t, pending):
            if pending == INTERACT:
                return await self._interact(t)
            return await asyncio.gather(*(self._call(t, c) for c in pending))

        return await asyncio.gather(*(one(t, pending) for t, pending in work))

    async def _interact(self, t: Trajectory) -> tuple[bool, ToolResponse, float]:
        try:
            done, content, score, _ = await asyncio.wait_for(
                t.interaction.generate_response(t.interaction_id, t.messages, **t.interaction_kwargs),
                timeout=self.config.tool_timeout_s)
        except Exception as e:  # noqa: BLE001 (an environment's failure ends this episode, not the run)
            log.warning("interaction %r failed: %s: %s", t.interaction.name, type(e).__name__, e)
            return True, ToolResponse(), 0.0
        response = content if isinstance(content, ToolResponse) else ToolResponse(text=str(content))
        return bool(done), response, float(score or 0.0)

    def take_turn(self, t: Trajectory, out: TurnOutput) -> list:
        """Append the model's turn; the tool calls to run next, INTERACT, or [] when the trajectory ends here."""
        budget = self.response_length - self.response_len(t)
        if len(out.ids) > budget:  # an engine that overran the turn's budget: cut, the turn did not end
            out = TurnOutput(out.ids[:budget], out.log_probs[:budget], None)
        content_ids = out.ids[:-1] if out.end_id is not None else out.ids
        end_text = self.tokenizer.decode([out.end_id], skip_special_tokens=False) if out.end_id is not None else ""
        t.segments.append(Segment(list(out.ids), model=True, end_text=end_text))
        t.log_probs.extend(out.log_probs)
        content = self.tokenizer.decode(content_ids, skip_special_tokens=False)
        t.messages.append({"role": "assistant", "content": content})
        t.assistant_turns += 1
        if out.end_id is None:  # the budget ended the turn
            t.done = t.truncated = True
            return []
        limits = self.config
        if (out.end_id != self.chat.turn_end_id or  # e.g. <|endoftext|>: the conversation cannot go on
                (limits.max_assistant_turns and t.assistant_turns >= limits.max_assistant_turns) or
                (limits.max_user_turns is not None and t.user_turns >= limits.max_user_turns)):
            t.done = True
            return []
        _, calls = parse_tool_calls(content, set(self.tools)) if self.tools else ("", [])
        if calls:
            return calls[:limits.max_parallel_calls]
        if t.interaction is not None:  # the environment answers this turn
            return INTERACT
        t.done = True
        return []

    async def _run_tools(self, work: list) -> list[list[ToolResult]]:
        return await asyncio.gather(*(asyncio.gather(*(self._call(t, c) for c in calls)) for t, calls in work))

    async def _call(self, t: Trajectory, call) -> ToolResult:
        tool = self.tools.get(call.name) if not call.error else None
        kwargs = t.tools_kwargs.get(call.name) or {}
        if tool is None:
            result = await run_call(None, None, call, self.config.tool_timeout_s)
        else:
            try:
                instance_id, _ = await asyncio.wait_for(
                    tool.create(create_kwargs=dict(kwargs.get("create_kwargs") or {}),
                                images=t.images[:t.prompt_images]), timeout=self.config.tool_timeout_s)
            except Exception as e:  # noqa: BLE001 (a tool's failure is an observation)
                error = f"the tool {call.name!r} could not start: {type(e).__name__}: {e}"
                return ToolResult(call.name, call.arguments, f"Error: {error}", error=error)
            try:
                result = await run_call(tool, instance_id, call, self.config.tool_timeout_s,
                                        dict(kwargs.get("execute_kwargs") or {}))
            finally:
                try:
                    await asyncio.wait_for(tool.release(instance_id, **dict(kwargs.get("release_kwargs") or {})),
                                           timeout=self.config.tool_timeout_s)
                except Exception as e:  # noqa: BLE001 (a release that fails costs nothing but a log line)
                    log.warning("releasing tool %r raised %s: %s", call.name, type(e).__name__, e)
        result.text = truncate(result.text, self.config.max_tool_response_length,
                               self.config.tool_response_truncate_side)
        return result

    def add_tool_turn(self, t: Trajectory, results: list[ToolResult]) -> None:
        """The tool messages through the chat template; ends the trajectory (truncated) when they would leave no
        room for a reply."""
        t.tool_results.extend(results)
        self._append(t, [_message("tool", r.text, r.images) for r in results], [i for r in results for i in r.images])

    def add_interaction_turn(self, t: Trajectory, done: bool, response: ToolResponse, score: float) -> None:
        """The environment's answer as a user turn (text and images), unless it ended the episode."""
        t.turn_scores.append(score)
        if done:
            t.done = True
            return
        t.interaction_turns += 1
        self._append(t, [_message("user", response.text, response.image)], list(response.image))

    def _append(self, t: Trajectory, messages: list[dict], images: list) -> None:
        images = [img.convert("RGB") for img in images]
        grids = [self._grid(img) for img in images]
        text = self.chat.tool_turn_text(t.messages, messages, t.segments[-1].end_text)
        ids = self.chat.expand(self.chat.encode(text), [self._count(g) for g in grids])
        if self.response_len(t) + len(ids) >= self.response_length:  # no room left for the model to answer
            t.done = t.truncated = True
            return
        t.segments.append(Segment(ids, model=False))
        t.log_probs.extend([0.0] * len(ids))
        t.messages.extend(messages)
        t.images = list(t.images) + images
        t.grids = list(t.grids) + grids
        t.user_turns += 1

    def check(self, t: Trajectory, where: str) -> None:
        """The debug check (multi_turn.tokenization_sanity_check_mode=strict): the trajectory's tokens equal the
        template's render of its final conversation."""
        self.chat.check(t.messages, t.segments, [self._count(g) for g in t.grids], where)


INTERACT = "interact"


def _message(role: str, text: str | None, images: list) -> dict:
    if not images:
        return {"role": role, "content": text or ""}
    content = [{"type": "image"} for _ in images]
    if text:
        content.append({"type": "text", "text": text})
    return {"role": role, "content": content}


def _where(nt: dict, i: int) -> str:
    origin = nt.get("row_origin")
    return str(origin[i]) if origin is not None and origin[i] else f"batch row {i}"


def cache_key(uid, t: Trajectory) -> str | None:
    """Rows of one prompt share pixel caches by uid; a row with tool images needs its own key."""
    if len(t.images) == t.prompt_images:
        return None
    return f"{uid}/{uuid.uuid4().hex}"


def stack_grids(grids: list[list[int]]) -> torch.Tensor | None:
    return torch.tensor(grids, dtype=torch.long) if grids else None
