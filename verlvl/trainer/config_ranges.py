"""Sizes and ranges of the config's numbers, checked by key before anything starts: a value that makes no
sense (a zero response length, a negative learning rate, an epoch count of 0) is refused with what to do."""

from __future__ import annotations

from typing import Any, Callable

POSITIVE = (lambda v: v > 0, "must be > 0")
AT_LEAST_ONE = (lambda v: v >= 1, "must be at least 1")
NON_NEGATIVE = (lambda v: v >= 0, "must be >= 0")
FRACTION = (lambda v: 0 < v <= 1, "must be in (0, 1]")
FREQUENCY = (lambda v: v == -1 or v > 0, "must be a positive number of steps, or -1 for never")

# key -> (test, what it must be); a key that is absent or null is not checked (its default applies).
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "data.max_prompt_length": AT_LEAST_ONE,
    "data.max_response_length": AT_LEAST_ONE,
    "data.train_batch_size": AT_LEAST_ONE,
    "data.gen_batch_size": AT_LEAST_ONE,
    "actor_rollout_ref.rollout.n": AT_LEAST_ONE,
    "actor_rollout_ref.rollout.temperature": NON_NEGATIVE,
    "actor_rollout_ref.rollout.top_p": FRACTION,
    "actor_rollout_ref.rollout.gpu_memory_utilization": FRACTION,
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu": AT_LEAST_ONE,
    "actor_rollout_ref.rollout.micro_batch_size": AT_LEAST_ONE,
    "actor_rollout_ref.actor.ppo_mini_batch_size": AT_LEAST_ONE,
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": AT_LEAST_ONE,
    "actor_rollout_ref.actor.ppo_max_token_len_per_gpu": AT_LEAST_ONE,
    "actor_rollout_ref.actor.ppo_epochs": AT_LEAST_ONE,
    "actor_rollout_ref.actor.optim.lr": NON_NEGATIVE,
    "actor_rollout_ref.actor.clip_ratio": POSITIVE,
    "actor_rollout_ref.actor.clip_ratio_low": POSITIVE,
    "actor_rollout_ref.actor.clip_ratio_high": POSITIVE,
    "actor_rollout_ref.actor.clip_ratio_c": (lambda v: v > 1, "must be > 1 (the dual-clip bound)"),
    "actor_rollout_ref.actor.grad_clip": POSITIVE,
    "actor_rollout_ref.actor.entropy_coeff": NON_NEGATIVE,
    "actor_rollout_ref.actor.kl_loss_coef": NON_NEGATIVE,
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu": AT_LEAST_ONE,
    "actor_rollout_ref.model.lora_rank": NON_NEGATIVE,
    "actor_rollout_ref.model.lora_alpha": POSITIVE,
    "critic.model.lora_rank": NON_NEGATIVE,
    "critic.model.lora_alpha": POSITIVE,
    "critic.ppo_micro_batch_size_per_gpu": AT_LEAST_ONE,
    "critic.ppo_epochs": AT_LEAST_ONE,
    "critic.optim.lr": NON_NEGATIVE,
    "critic.cliprange_value": POSITIVE,
    "algorithm.gamma": (lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    "algorithm.lam": (lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    "trainer.total_epochs": AT_LEAST_ONE,
    "trainer.total_training_steps": AT_LEAST_ONE,
    "trainer.test_freq": FREQUENCY,
    "trainer.save_freq": FREQUENCY,
    "trainer.mismatch_check_freq": FREQUENCY,
}


def _lookup(cfg: dict, dotted: str):
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def range_errors(cfg: dict) -> list[str]:
    """One line per number outside its range, naming the key, the value and what it must be."""
    errors = []
    for key, (ok, must) in RANGES.items():
        value = _lookup(cfg, key)
        if value is None or isinstance(value, bool):
            continue
        if not isinstance(value, (int, float)):
            errors.append(f"{key}={value!r} must be a number")
        elif not ok(value):
            errors.append(f"{key}={value} {must}")
    return errors
