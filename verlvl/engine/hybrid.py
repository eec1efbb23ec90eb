"""The rollout/train switch: one place orders sleep, wake, weight sync, actor offload and cache frees.

Around every generation, as veRL does it:

    rollout_mode()   engine.wake_up(tags=["weights"])       weights memory back (level 2: contents undefined)
                     sync_weights()                          only when the engine's copy is stale
                     offload_actor()                         when given (the config asks for it)
                     empty_cache()                           the sync's buffers and the actor's memory go back
                     engine.wake_up(tags=["kv_cache"])       the KV cache takes what is free now
    ... generate ...
    train_mode()     engine.sleep(level=2, or 1 with LoRA)
                     load_actor()                            when the actor was offloaded
                     empty_cache()

The engine's copy is stale when the actor changed since the last sync (`mark_actor_updated()` bumps a
version) or when a level-2 sleep discarded it: vLLM's level 2 frees the weights' memory, and waking
gives back memory whose contents are undefined, so every rollout_mode after a level-2 sleep syncs.
Level 1 (LoRA) keeps the base weights in host memory and brings them back on wake.

With `sleep_mode=False` (vLLM's CPU backend rejects enable_sleep_mode; a user may turn
free_cache_engine off) no sleep or wake is called; syncs, offload and cache frees still run.

vLLM 0.32 (vllm/entrypoints/llm.py): `LLM.sleep(self, level: int = 1, mode="abort")` returns None;
`LLM.wake_up(self, tags: list[str] | None = None) -> bool` returns "whether the engine is fully awake"
(vllm/v1/engine/core.py: the scheduler resumes only then, so a generate while a tag sleeps never runs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

SLEEP_TAGS = frozenset({"weights", "kv_cache"})  # vllm/v1/executor/abstract.py: what a sleep puts to sleep


class SleepingEngine(Protocol):
    def sleep(self, level: int = 1) -> None: ...

    def wake_up(self, tags: list[str] | None = None) -> bool: ...


def _nothing() -> None:
    return None


class HybridSwitch:
    """Moves one process between generating (engine awake, current weights) and training (engine asleep,
    actor on the device). The worker injects what touches the actor and the device."""

    def __init__(self, engine: SleepingEngine, sync_weights: Callable[[], None],
                 offload_actor: Callable[[], None] | None = None,
                 load_actor: Callable[[], None] | None = None,
                 empty_cache: Callable[[], None] = _nothing, *, sleep_mode: bool, lora: bool = False,
                 asleep: bool = False):
        """`asleep`: whether the engine is already asleep (put to sleep right after it was built)."""
        if asleep and not sleep_mode:
            raise ValueError("an engine without sleep mode cannot be asleep")
        if (offload_actor is None) != (load_actor is None):
            raise ValueError("give both offload_actor and load_actor, or neither")
        self.engine = engine
        self._sync, self._empty_cache = sync_weights, empty_cache
        self._offload, self._load = offload_actor, load_actor
        self.sleep_mode, self.lora = sleep_mode, lora
        self.sleep_level = 1 if lora else 2
        self.sleeping_tags: set[str] = set(SLEEP_TAGS) if asleep else set()  # put to sleep, not woken yet
        self._fully_awake = not asleep  # the engine's own word: wake_up's return value
        self.actor_version = 0
        self.synced_version: int | None = None  # None: the engine holds no weights of ours yet
        self.actor_offloaded = False
        self.in_rollout = False

    # ------------------------------------------------------------------ state
    @property
    def asleep(self) -> bool:
        """Whether any part of the engine is asleep (it cannot generate then)."""
        return not self._fully_awake

    @property
    def weights_stale(self) -> bool:
        return self.synced_version != self.actor_version

    def mark_actor_updated(self) -> None:
        """The actor changed (an optimizer step, a checkpoint load): sync before the next generation."""
        self.actor_version += 1

    # ------------------------------------------------------------------ the two modes
    def rollout_mode(self) -> None:
        """Engine awake with the actor's current weights; the actor offloaded when asked."""
        if self.in_rollout:
            return
        self.in_rollout = True
        self._wake(["weights"])
        if self.weights_stale:
            self._sync()
            self.synced_version = self.actor_version
        if self._offload is not None and not self.actor_offloaded:
            self._offload()
            self.actor_offloaded = True
        self._empty_cache()
        self._wake(["kv_cache"])
        if self.asleep:
            raise RuntimeError("the rollout engine is not fully awake after waking its weights and KV cache; "
                               "vLLM schedules no request until it is")

    def train_mode(self) -> None:
        """Engine asleep (its memory free), the actor back on the device; also after a failed rollout_mode."""
        self.in_rollout = False
        # vLLM's executor ignores a sleep while the weights sleep (it warns "already sleeping")
        if self.sleep_mode and "weights" not in self.sleeping_tags:
            self.engine.sleep(level=self.sleep_level)
            self.sleeping_tags, self._fully_awake = set(SLEEP_TAGS), False
            if self.sleep_level >= 2:
                self.synced_version = None  # the weights' memory was freed: the next wake returns garbage
        if self.actor_offloaded:
            self._load()
            self.actor_offloaded = False
        self._empty_cache()

    @contextmanager
    def generating(self) -> Iterator[HybridSwitch]:
        """rollout_mode for the body, train_mode afterwards, also when the body (or the switch) raised."""
        try:
            self.rollout_mode()
            yield self
        finally:
            self.train_mode()

    def _wake(self, tags: list[str]) -> None:
        if not self.sleep_mode or not self.sleeping_tags & set(tags):
            return
        self._fully_awake = bool(self.engine.wake_up(tags=tags))  # False after a partial wake
        self.sleeping_tags = set() if self._fully_awake else self.sleeping_tags - set(tags)
