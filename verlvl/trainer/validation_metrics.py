"""Validation metrics with veRL's names: per prompt, mean@N and std@N of each reward variable, and for
n = 2, 4, ..., N bootstrap estimates of best@n, worst@n and (where the reward reports a `pred`) maj@n;
averaged over prompts per data source. The headline ones go under val-core, the rest under val-aux."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

N_BOOTSTRAP = 1000


def subset_sizes(n: int) -> list[int]:
    """2, 4, 8, ... below n, then n itself (none for a single response)."""
    sizes, k = [], 2
    while k < n:
        sizes.append(k)
        k *= 2
    return sizes + [n] if n > 1 else []


def majority_value(values: list[float], preds: list) -> float:
    """The value of the first response that gave the most common prediction."""
    counts = Counter(preds)
    top = max(counts.values())
    winner = next(p for p in preds if counts[p] == top)
    return values[preds.index(winner)]


def bootstrap(values: list[float], preds: list | None, size: int, seed: int) -> dict[str, tuple[float, float]]:
    """Mean and std over N_BOOTSTRAP resamples (with replacement) of `size` responses of best, worst, maj."""
    rng = np.random.RandomState(seed)
    picks = rng.choice(len(values), size=(N_BOOTSTRAP, size), replace=True)
    array = np.asarray(values, dtype=np.float64)
    out = {"best": array[picks].max(1), "worst": array[picks].min(1)}
    if preds is not None:
        out["maj"] = np.array([majority_value([values[i] for i in row], [preds[i] for i in row]) for row in picks])
    return {k: (float(v.mean()), float(v.std())) for k, v in out.items()}


def prompt_metrics(values: list[float], preds: list | None, seed: int) -> dict[str, float]:
    n = len(values)
    metrics = {f"mean@{n}": float(np.mean(values))}
    if n > 1:
        metrics[f"std@{n}"] = float(np.std(values))
        for size in subset_sizes(n):
            for name, (mean, std) in bootstrap(values, preds, size, seed).items():
                metrics[f"{name}@{size}/mean"], metrics[f"{name}@{size}/std"] = mean, std
    return metrics


def validation_metrics(data_sources, uids, infos: dict[str, list], seed: int = 42) -> dict[str, float]:
    """`infos`: per-response values by variable (reward, acc, ..., and optionally `pred` for voting)."""
    grouped: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for i, (source, uid) in enumerate(zip(data_sources, uids)):
        for var, values in infos.items():
            grouped[source][uid][var].append(values[i])
    per_source: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for source, prompts in grouped.items():
        for var_values in prompts.values():
            preds = var_values.get("pred")
            for var, values in var_values.items():
                if not values or isinstance(values[0], str) or var == "pred":
                    continue
                for name, value in prompt_metrics(values, preds, seed).items():
                    per_source[source][var][name].append(value)
    out = {}
    for source, variables in per_source.items():
        core = "acc" if "acc" in variables else "reward"
        for var, metrics in variables.items():
            n_max = max(int(name.split("@")[1].split("/")[0]) for name in metrics)
            for name, values in metrics.items():
                headline = var == core and name.split("@")[0] in ("mean", "maj", "best") and f"@{n_max}" in name
                out[f"{'val-core' if headline else 'val-aux'}/{source}/{var}/{name}"] = float(np.nanmean(values))
    return out
