"""Step metrics with veRL's names, each reduced by an explicit aggregation (mean / max / min)."""

from __future__ import annotations

import torch

from verlvl.protocol import DataProto


def _stats(prefix: str, values: torch.Tensor) -> dict[str, float]:
    values = values.float()
    return {f"{prefix}/mean": values.mean().item(), f"{prefix}/max": values.max().item(),
            f"{prefix}/min": values.min().item()}


def _masked(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return values[mask.bool()] if mask.any() else torch.zeros(1)


def compute_data_metrics(batch: DataProto, use_critic: bool, max_response_length: int) -> dict[str, float]:
    mask = batch.batch["response_mask"]
    prompt_len = batch.batch["prompts"].shape[-1]
    prompt_lengths = batch.batch["attention_mask"][:, :prompt_len].sum(-1).float()
    response_lengths = mask.sum(-1).float()
    metrics = {}
    metrics.update(_stats("critic/score", batch.batch["token_level_scores"].sum(-1)))
    metrics.update(_stats("critic/rewards", batch.batch["token_level_rewards"].sum(-1)))
    metrics.update(_stats("critic/advantages", _masked(batch.batch["advantages"], mask)))
    metrics.update(_stats("critic/returns", _masked(batch.batch["returns"], mask)))
    if use_critic and "values" in batch.batch.keys():
        metrics.update(_stats("critic/values", _masked(batch.batch["values"], mask)))
    metrics.update(_stats("response_length", response_lengths))
    metrics["response_length/clip_ratio"] = (response_lengths >= max_response_length).float().mean().item()
    metrics.update(_stats("prompt_length", prompt_lengths))
    metrics["prompt_length/clip_ratio"] = (prompt_lengths >= prompt_len).float().mean().item()
    return metrics


def compute_timing_metrics(timing: dict[str, float], batch: DataProto) -> dict[str, float]:
    n_response = batch.batch["response_mask"].sum().item()
    n_prompt = batch.batch["attention_mask"][:, :batch.batch["prompts"].shape[-1]].sum().item()
    out = {f"timing_s/{k}": v for k, v in timing.items()}
    per_token = {"gen": n_response, "ref": n_prompt + n_response, "old_log_prob": n_prompt + n_response,
                 "values": n_prompt + n_response, "update_actor": n_prompt + n_response,
                 "update_critic": n_prompt + n_response}
    for k, v in timing.items():
        if k in per_token and per_token[k]:
            out[f"timing_per_token_ms/{k}"] = v * 1000 / per_token[k]
    return out


def compute_throughput_metrics(batch: DataProto, step_seconds: float, n_workers: int) -> dict[str, float]:
    tokens = batch.batch["attention_mask"].sum().item()
    return {"perf/total_num_tokens": float(tokens), "perf/time_per_step": step_seconds,
            "perf/throughput": tokens / max(step_seconds, 1e-9) / n_workers}


def compute_mismatch_metrics(batch: DataProto) -> dict[str, float]:
    """How far the rollout's own log-probs are from the trainer's (rollout/trainer mismatch)."""
    if ("rollout_log_probs" not in batch.batch.keys() or "old_log_probs" not in batch.batch.keys()
            or batch.meta_info.get("old_log_probs_are_rollouts")):
        return {}
    mask = batch.batch["response_mask"].bool()
    diff = (batch.batch["rollout_log_probs"] - batch.batch["old_log_probs"])[mask]
    if diff.numel() == 0:
        return {}
    probs_diff = (batch.batch["rollout_log_probs"].exp() - batch.batch["old_log_probs"].exp())[mask].abs()
    return {"training/rollout_probs_diff_max": probs_diff.max().item(),
            "training/rollout_probs_diff_mean": probs_diff.mean().item(),
            "training/rollout_log_probs_diff_abs_mean": diff.abs().mean().item()}


def compute_vision_token_metrics(batch: DataProto, never_sampled: torch.Tensor) -> dict[str, float]:
    """Image/vision special tokens in the responses. Every engine forbids them, so this stays 0 unless an
    engine ignored the ban (the next forward would count them as image slots)."""
    if never_sampled.numel() == 0:
        return {}
    responses = batch.batch["responses"]
    sampled = torch.isin(responses, never_sampled.to(responses.device)) & batch.batch["response_mask"].bool()
    return {"rollout/sampled_vision_tokens": float(sampled.sum().item())}
