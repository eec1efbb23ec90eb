"""DataProtoFuture: the pending result of a non-blocking worker-group call, passable to the next call."""

from __future__ import annotations

from typing import Any


class DataProtoFuture:
    """Holds the per-worker object refs of a call and how to collect them.

    `get()` waits (reporting a dead or failing worker with its role, rank and node) and collects.
    Passed as an argument to a data-parallel call with the same number of chunks, each worker's
    ref goes straight to the matching worker of the next call: the driver never fetches the data.
    """

    def __init__(self, group, method_name: str, refs: list, plan, mode):
        self._group, self._method, self._refs, self._plan, self._mode = group, method_name, refs, plan, mode

    @property
    def pad_size(self) -> int:
        return self._plan.pad_size

    def can_pass_on(self, n_chunks: int) -> bool:
        collect_from = self._plan.collect_from
        return collect_from is not None and len(collect_from) == n_chunks

    def chunk_refs(self) -> list:
        by_worker = dict(zip(self._plan.worker_indices, self._refs))
        return [by_worker[w] for w in self._plan.collect_from]

    def get(self) -> Any:
        outputs = self._group._wait(self._refs, self._plan.worker_indices, self._method)
        return self._mode.collect(self._group, outputs, self._plan)

    def __repr__(self) -> str:
        return f"DataProtoFuture({self._group.role}.{self._method}, {len(self._refs)} workers)"
