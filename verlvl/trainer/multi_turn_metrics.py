"""Per-step metrics of multi-turn rollouts: turns, tool calls, tool errors and latency, truncated trajectories."""

from __future__ import annotations

import numpy as np

from verlvl.protocol import DataProto


def compute_multi_turn_metrics(batch: DataProto) -> dict[str, float]:
    """veRL's num_turns/{min,max,mean} and multi_turn/* over the step's samples; {} for single-turn batches."""
    nt = batch.non_tensor_batch
    if "__num_turns__" not in nt:
        return {}
    turns = np.asarray(nt["__num_turns__"], dtype=np.float64)
    calls = [list(c or []) for c in nt.get("tool_calls", [[]] * len(turns))]
    per_sample = np.array([len(c) for c in calls], dtype=np.float64)
    errors = [c for cs in calls for c in cs if c.get("error")]
    latencies = [float(c.get("latency_s", 0.0)) for cs in calls for c in cs if not c.get("error") or c.get("latency_s")]
    n_calls = int(per_sample.sum())
    metrics = {
        "num_turns/min": float(turns.min()), "num_turns/max": float(turns.max()), "num_turns/mean": float(turns.mean()),
        "multi_turn/tool_calls/mean": float(per_sample.mean()), "multi_turn/tool_calls/max": float(per_sample.max()),
        "multi_turn/tool_call_rate": float((per_sample > 0).mean()),  # samples that called a tool at least once
        "multi_turn/tool_errors": float(len(errors)),
        "multi_turn/tool_error_ratio": float(len(errors) / n_calls) if n_calls else 0.0,
        "multi_turn/tool_images/mean": float(np.mean([sum(c.get("num_images", 0) for c in cs) for cs in calls])),
    }
    if "interaction_turns" in nt:
        metrics["multi_turn/interaction_turns/mean"] = float(np.mean(np.asarray(nt["interaction_turns"], dtype=float)))
    if "multi_turn_truncated" in nt:
        metrics["multi_turn/truncated_ratio"] = float(np.asarray(nt["multi_turn_truncated"], dtype=bool).mean())
    if latencies:
        metrics["multi_turn/tool_latency_s/mean"] = float(np.mean(latencies))
        metrics["multi_turn/tool_latency_s/max"] = float(np.max(latencies))
    return metrics
