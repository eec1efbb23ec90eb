"""DAPO's dynamic sampling (algorithm.filter_groups): keep only prompt groups whose responses disagree on
the chosen metric (a group scored all-equal gives GRPO no signal), and generate more batches until
train_batch_size prompts are kept."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from verlvl.protocol import DataProto

COUNT_PREFIXES = ("reward/errors", "reward/timeouts", "reward/outcome/")  # summed; other reward metrics: means


class NotEnoughGroups(RuntimeError):
    pass


def metric_values(batch: DataProto, reward: dict, metric: str) -> np.ndarray:
    """Per response: seq_reward / seq_final_reward (the summed token scores; no KL term is added before
    filtering here), or a value the reward function reports (acc, score, ...)."""
    if metric in ("seq_reward", "seq_final_reward"):
        return reward["reward_tensor"].sum(-1).numpy()
    info = reward.get("reward_extra_info") or {}
    if metric not in info:
        raise KeyError(f"algorithm.filter_groups.metric={metric!r}: the reward reports {sorted(info)}; use one of "
                       "those, or seq_reward")
    return np.asarray(info[metric], dtype=np.float64)


def varied_groups(uids, values: np.ndarray) -> tuple[list[int], int, int]:
    """Rows of the groups whose values are not all equal (or that have one response), the number of such
    groups, and the number of groups."""
    rows = defaultdict(list)
    for i, uid in enumerate(uids):
        rows[uid].append(i)
    kept = [uid for uid, idx in rows.items() if len(idx) == 1 or np.std(values[idx]) > 0]
    keep = set(kept)
    return [i for i, uid in enumerate(uids) if uid in keep], len(kept), len(rows)


def merge_rewards(parts: list[tuple[dict, int]]) -> dict:
    """One reward dict for responses scored in several generation batches: per-response values
    concatenated, counts summed, means weighted by the batch sizes."""
    tensors = [r["reward_tensor"] for r, _ in parts]
    width = max(t.shape[1] for t in tensors)
    merged = {"reward_tensor": torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1])) for t in tensors])}
    info = defaultdict(list)
    for r, _ in parts:
        for k, v in (r.get("reward_extra_info") or {}).items():
            info[k] += list(v)
    merged["reward_extra_info"] = dict(info)
    totals, weights = defaultdict(float), defaultdict(float)
    for r, n in parts:
        for k, v in (r.get("reward_metrics") or {}).items():
            counted = k.startswith(COUNT_PREFIXES)
            totals[k] += v if counted else v * n
            weights[k] += 1 if counted else n
    merged["reward_metrics"] = {k: (totals[k] if k.startswith(COUNT_PREFIXES) else totals[k] / weights[k])
                                for k in totals}
    return merged
