"""trainer.balance_batch (veRL's): reorder a batch so each worker's equal share of rows holds a similar number of tokens."""

from __future__ import annotations

import heapq

import torch

from verlvl.protocol import DataProto


def balanced_partitions(tokens: list[int], k: int) -> list[list[int]]:
    """k lists of len(tokens) / k row indices each, with token sums as close as a greedy fill makes them:
    the longest row first, each into the lightest partition that still has room."""
    size = len(tokens) // k
    heap = [(0, p) for p in range(k)]  # (token sum, partition) of partitions with room
    parts: list[list[int]] = [[] for _ in range(k)]
    for i in sorted(range(len(tokens)), key=lambda i: (-tokens[i], i)):
        total, p = heapq.heappop(heap)
        parts[p].append(i)
        if len(parts[p]) < size:
            heapq.heappush(heap, (total + tokens[i], p))
    return [sorted(part) for part in parts]


def balance_batch(batch: DataProto, dp_size: int, prefix: str = "global_seqlen") -> dict[str, float]:
    """Reorder `batch` in place so that the dispatch's contiguous equal chunks (one per data-parallel worker)
    carry similar token counts; veRL's global_seqlen/* metrics. A batch that does not divide evenly over
    the workers is left as it is."""
    tokens = batch.batch["attention_mask"].view(len(batch), -1).sum(-1).tolist()
    if dp_size <= 1 or len(batch) % dp_size:
        return {}
    parts = balanced_partitions([int(t) for t in tokens], dp_size)
    batch.reorder(torch.tensor([i for part in parts for i in part]))
    before = [sum(tokens[i * len(tokens) // dp_size:(i + 1) * len(tokens) // dp_size]) for i in range(dp_size)]
    after = [sum(tokens[i] for i in part) for part in parts]
    return {f"{prefix}/min": min(before), f"{prefix}/max": max(before), f"{prefix}/minmax_diff": max(before) - min(before),
            f"{prefix}/balanced_min": min(after), f"{prefix}/balanced_max": max(after),
            f"{prefix}/mean": sum(tokens) / dp_size}
