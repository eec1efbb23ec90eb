"""Metrics a worker group returns, one value per rank (veRL's concat), reduced to one value each."""

from __future__ import annotations

# Peaks per rank (engine/placement.py memory_metrics): the largest rank is the one that runs out first.
PEAK_METRICS = ("max_memory_allocated_gb", "max_memory_reserved_gb")


def reduce_worker_metrics(metrics: dict | None) -> dict[str, float]:
    """{name: [rank 0's value, rank 1's, ...]} -> {name: value}: the max for per-rank peaks (PEAK_METRICS),
    else the mean over ranks (the actor's and critic's losses are already means over all ranks, so every
    rank holds the same value). A single value passes through (a worker called directly)."""
    out = {}
    for name, value in (metrics or {}).items():
        values = [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)]
        if not values:
            continue
        peak = name.rsplit("/", 1)[-1] in PEAK_METRICS
        out[name] = max(values) if peak else sum(values) / len(values)
    return out
