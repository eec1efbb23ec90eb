"""RewardScorer: runs a reward function over samples safely (timeouts, errors cost one sample) and in parallel."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Any

from verlvl.reward.function import RewardFunctionSpec, inspect_reward_function
from verlvl.reward.pool import CallResult, ScoringPool


@dataclass
class Sample:
    """One response to score. The first four are veRL's arguments; the rest go to functions that ask."""

    data_source: str
    solution_str: str
    ground_truth: Any
    extra_info: dict | None = None
    prompt: str | None = None
    images: list | None = None
    response_length: int | None = None
    response_ids: list | None = None
    uid: str | None = None
    max_response_length: int | None = None
    num_turns: int | None = None  # multi-turn: assistant + tool turns + the prompt (veRL's __num_turns__)
    turns: list | None = None  # multi-turn: the messages after the prompt (assistant text, tool results)
    tool_calls: list | None = None  # multi-turn: per call name, arguments, result, error, num_images, latency_s
    turn_scores: list | None = None  # multi-turn: the interaction's score of each of its turns


@dataclass
class ScoreOutcome:
    score: float
    extras: dict = field(default_factory=dict)  # the function's other numeric outputs (acc, format, ...)
    status: str = "ok"  # "ok" | "error" | "timeout"
    error: str = ""


class RewardScorer:
    """Per-sample functions run in a pool of processes with a timeout per call; a batch function is one
    call; async functions run concurrently in this process (for remote judges), at most
    `max_concurrency` at once. A call that raises, hangs or returns garbage gives that sample
    `error_score` and is counted, never stops the run."""

    def __init__(self, spec: RewardFunctionSpec, num_workers: int = 2, timeout_s: float = 10.0,
                 error_score: float = 0.0, max_concurrency: int = 64, batch_timeout_s: float = 300.0):
        self.info = inspect_reward_function(spec)  # fails here, before any model loads, if unusable
        self.spec, self.num_workers, self.timeout_s = spec, num_workers, timeout_s
        self.error_score, self.max_concurrency, self.batch_timeout_s = error_score, max_concurrency, batch_timeout_s
        self._pool: ScoringPool | None = None
        self._async_fn = spec.load() if self.info.is_async else None

    # ---------------------------------------------------------------- calls
    def _kwargs(self, s: Sample) -> dict:
        kw = {"data_source": s.data_source, "solution_str": s.solution_str, "ground_truth": s.ground_truth,
              "extra_info": s.extra_info}
        kw.update({name: getattr(s, name) for name in self.info.extras})
        return kw

    def _batch_kwargs(self, samples: list[Sample]) -> dict:
        kw = {"data_sources": [s.data_source for s in samples], "solution_strs": [s.solution_str for s in samples],
              "ground_truths": [s.ground_truth for s in samples], "extra_infos": [s.extra_info for s in samples]}
        kw.update({name: [getattr(s, name) for s in samples] for name in self.info.extras})
        return kw

    def pool(self, timeout_s: float) -> ScoringPool:
        if self._pool is None:
            self._pool = ScoringPool(self.spec, self.num_workers, timeout_s)
        self._pool.timeout_s = timeout_s
        return self._pool

    def score(self, samples: list[Sample]) -> list[ScoreOutcome]:
        if not samples:
            return []
        if self.info.is_async and not self.info.is_batch:
            results = asyncio.run(self._score_async([self._kwargs(s) for s in samples]))
        elif self.info.is_async:
            results = asyncio.run(self._score_async([self._batch_kwargs(samples)], self.batch_timeout_s))
            return self._unbatch(results[0], len(samples))
        elif self.info.is_batch:
            results = self.pool(self.batch_timeout_s).map([self._batch_kwargs(samples)])
            return self._unbatch(results[0], len(samples))
        else:
            results = self.pool(self.timeout_s).map([self._kwargs(s) for s in samples])
        return [self._outcome(r) for r in results]

    async def _score_async(self, calls: list[dict], timeout_s: float | None = None) -> list[CallResult]:
        limit = asyncio.Semaphore(self.max_concurrency)

        async def one(kw):
            async with limit:
                try:
                    value = await asyncio.wait_for(self._async_fn(**kw, **self.spec.reward_kwargs),
                                                   timeout_s or self.timeout_s)
                    return CallResult("ok", value)
                except asyncio.TimeoutError:
                    return CallResult("timeout", error=f"no result within {timeout_s or self.timeout_s:g} s")
                except Exception as e:  # noqa: BLE001
                    return CallResult("error", error=f"{type(e).__name__}: {e}")

        return list(await asyncio.gather(*(one(kw) for kw in calls)))

    # ---------------------------------------------------------------- results
    def _unbatch(self, result: CallResult, n: int) -> list[ScoreOutcome]:
        if result.status == "ok":
            if isinstance(result.value, (list, tuple)) and len(result.value) == n:
                return [self._outcome(CallResult("ok", v)) for v in result.value]
            got = len(result.value) if hasattr(result.value, "__len__") else "?"
            result = CallResult("error", error=f"the batch function returned {type(result.value).__name__} "
                                               f"of length {got}, expected a list of {n}")
        return [self._outcome(result) for _ in range(n)]

    def _outcome(self, result: CallResult) -> ScoreOutcome:
        if result.status != "ok":
            return ScoreOutcome(self.error_score, status=result.status, error=result.error)
        value = result.value
        extras: dict = {}
        if isinstance(value, dict):
            if "score" not in value:
                return ScoreOutcome(self.error_score, status="error",
                                    error=f"returned a dict without 'score' (keys {sorted(value)})")
            extras = {k: float(v) for k, v in value.items() if k != "score" and isinstance(v, (int, float, bool))}
            value = value["score"]
        try:
            score = float(value)
        except (TypeError, ValueError):
            return ScoreOutcome(self.error_score, status="error",
                                error=f"returned {type(value).__name__}, not a number or a dict with 'score'")
        if not math.isfinite(score):
            return ScoreOutcome(self.error_score, status="error", error=f"returned a non-finite score {score}")
        return ScoreOutcome(score, extras)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
