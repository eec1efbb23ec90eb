"""ScoringPool: scoring in worker processes, each call with a timeout; a hung call costs its worker, not the run."""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from dataclasses import dataclass
from typing import Any

from verlvl.reward.function import RewardFunctionSpec


@dataclass
class CallResult:
    status: str  # "ok" | "error" | "timeout"
    value: Any = None
    error: str = ""


def _worker_main(spec: RewardFunctionSpec, tasks, results) -> None:
    import asyncio
    import inspect

    try:
        fn = spec.load()
    except Exception as e:  # reported for every task this worker receives
        fn, load_error = None, f"{type(e).__name__}: {e}"
    while True:
        item = tasks.get()
        if item is None:
            return
        task_id, kwargs = item
        if fn is None:
            results.put((task_id, "error", load_error))
            continue
        try:
            value = fn(**kwargs, **spec.reward_kwargs)
            if inspect.isawaitable(value):
                value = asyncio.run(value)
            results.put((task_id, "ok", value))
        except BaseException as e:  # noqa: BLE001 - any failure of user code costs this sample only
            results.put((task_id, "error", f"{type(e).__name__}: {e}"))


class ScoringPool:
    """`num_workers` processes that load the function once and score calls sent to them one at a time.

    A call running longer than `timeout_s` is abandoned: its process is killed and replaced. Model
    output is passed as data, never evaluated."""

    def __init__(self, spec: RewardFunctionSpec, num_workers: int = 2, timeout_s: float = 10.0):
        self.spec, self.num_workers, self.timeout_s = spec, max(1, num_workers), timeout_s
        self._ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
        self._results = self._ctx.Queue()
        self._workers: list[tuple[Any, Any]] = [self._start_worker() for _ in range(self.num_workers)]

    def _start_worker(self):
        tasks = self._ctx.Queue()
        process = self._ctx.Process(target=_worker_main, args=(self.spec, tasks, self._results), daemon=True)
        process.start()
        return process, tasks

    def map(self, calls: list[dict]) -> list[CallResult]:
        """Run fn(**call) for every call; results in order."""
        out: list[CallResult | None] = [None] * len(calls)
        pending = list(range(len(calls)))[::-1]
        running: dict[int, tuple[int, float]] = {}  # worker index -> (task id, start time)
        while pending or running:
            for w in range(self.num_workers):
                if w not in running and pending:
                    task_id = pending.pop()
                    self._workers[w][1].put((task_id, calls[task_id]))
                    running[w] = (task_id, time.monotonic())
            try:
                task_id, status, value = self._results.get(timeout=0.05)
                if any(t[0] == task_id for t in running.values()):  # not a late answer after a timeout
                    out[task_id] = CallResult(status, value if status == "ok" else None,
                                              value if status == "error" else "")
                    running = {w: t for w, t in running.items() if t[0] != task_id}
            except queue.Empty:
                pass
            now = time.monotonic()
            for w, (task_id, started) in list(running.items()):
                process = self._workers[w][0]
                if now - started > self.timeout_s or not process.is_alive():
                    if out[task_id] is None:
                        out[task_id] = (CallResult("timeout", error=f"no result within {self.timeout_s:g} s")
                                        if process.is_alive() else
                                        CallResult("error", error=f"scoring process died (exit {process.exitcode})"))
                    process.kill()
                    process.join()
                    self._workers[w] = self._start_worker()
                    del running[w]
        return out  # type: ignore[return-value]

    def close(self) -> None:
        for process, tasks in self._workers:
            if process.is_alive():
                tasks.put(None)
        for process, _ in self._workers:
            process.join(timeout=2)
            if process.is_alive():
                process.kill()
        self._workers = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
