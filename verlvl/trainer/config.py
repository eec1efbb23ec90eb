"""Checking the composed config once, early, with messages that name the key; derived values beside it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verlvl.algos import ADV_ESTIMATORS, KL_PENALTIES, LOSS_AGG_MODES, POLICY_LOSSES
from verlvl.algos.rollout_correction import RolloutCorrectionConfig
from verlvl.config.defaults import setting
from verlvl.config.known_keys import default_tree, key_problems
from verlvl.data import sources
from verlvl.data.config import DataConfig
from verlvl.trainer import builtin
from verlvl.trainer.config_ranges import range_errors
from verlvl.utils.device import is_cuda_available
from verlvl.utils.tracking import logger_problems
from verlvl.workers.config import ActorConfig, CriticConfig, ModelConfig, RefConfig, RolloutConfig, from_mapping
from verlvl.workers.rollout import ROLLOUT_ENGINES
from verlvl.workers.rollout.vllm_version import check_vllm_version



class ConfigError(ValueError):
    """One or more config keys are wrong; each line names the key and what to do."""


@dataclass(frozen=True)
class Derived:
    """Values computed from the config (never written back into it)."""

    world_size: int
    use_gpu: bool
    use_critic: bool
    use_reference: bool
    model_path: str
    train_files: tuple[str, ...]
    val_files: tuple[str, ...]
    on_policy: bool


def check_config(cfg: dict[str, Any], resolve_builtins: bool = True) -> Derived:
    """Raise ConfigError listing every problem found; otherwise return the derived values."""
    errors: list[str] = key_problems(cfg) + range_errors(cfg)  # unknown keys; veRL keys verlvl does not do
    data_cfg = _try(errors, lambda: DataConfig.from_mapping(cfg.get("data"), strict=False))
    arr = cfg.get("actor_rollout_ref") or {}
    typed = {name: _try(errors, lambda c=cls, n=name: from_mapping(c, arr.get(n), f"actor_rollout_ref.{n}",
                                                                   strict=False))
             for name, cls in (("model", ModelConfig), ("actor", ActorConfig), ("rollout", RolloutConfig),
                               ("ref", RefConfig))}
    actor, rollout = typed["actor"], typed["rollout"]
    trainer, algo = cfg.get("trainer") or {}, cfg.get("algorithm") or {}
    critic_cfg = cfg.get("critic") or {}
    _try(errors, lambda: from_mapping(CriticConfig, {k: v for k, v in critic_cfg.items() if k != "enable"}, "critic",
                                      strict=False))
    _check_values_not_done_here(cfg, typed["model"], errors)

    nnodes = int(setting(trainer, "trainer.nnodes"))
    per_node = int(setting(trainer, "trainer.n_gpus_per_node"))
    world = nnodes * per_node
    if nnodes < 1 or per_node < 1:
        errors.append(f"trainer.nnodes={nnodes} and trainer.n_gpus_per_node={per_node} must both be at least 1")
    device = setting(trainer, "trainer.device")
    use_gpu = is_cuda_available() if device == "auto" else device == "cuda"
    if device not in ("auto", "cuda", "cpu"):
        errors.append(f"trainer.device={device!r}: use auto, cuda or cpu")
    if device == "cuda" and not is_cuda_available():
        errors.append("trainer.device=cuda but this machine has no CUDA GPU; use trainer.device=auto (or cpu) to "
                      "train on CPU")

    _check_filter_groups(algo, errors)
    errors += logger_problems(trainer.get("logger"))
    correction = _try(errors, lambda: RolloutCorrectionConfig.from_mapping(algo.get("rollout_correction")))
    if correction is not None and correction.bypass_mode and (
            correction.enabled or correction.loss_type != "ppo_clip"):
        errors.append("algorithm.rollout_correction.bypass_mode=true is supported here only as 'old log-probs are "
                      "the rollout's' (loss_type=ppo_clip, rollout_is and rollout_rs null); for importance weights "
                      "or rejection use bypass_mode=false (the trainer recomputes the old log-probs)")

    if data_cfg and actor and rollout:
        n = rollout.n
        if data_cfg.train_batch_size % actor.ppo_mini_batch_size:
            errors.append(f"data.train_batch_size={data_cfg.train_batch_size} is not a multiple of "
                          f"actor_rollout_ref.actor.ppo_mini_batch_size={actor.ppo_mini_batch_size}")
        if actor.ppo_mini_batch_size * n % world:
            errors.append(f"actor_rollout_ref.actor.ppo_mini_batch_size x rollout.n = {actor.ppo_mini_batch_size * n} "
                          f"responses per optimizer step do not divide over {world} worker slots "
                          "(trainer.nnodes x trainer.n_gpus_per_node)")
        if data_cfg.train_batch_size * n < world:
            errors.append(f"data.train_batch_size x rollout.n = {data_cfg.train_batch_size * n} responses is fewer "
                          f"than the {world} worker slots")
    if rollout and rollout.multi_turn.enable:  # the agent loop (workers/rollout/agent_loop.py) needs the messages
        if data_cfg and not data_cfg.return_raw_chat:
            errors.append("actor_rollout_ref.rollout.multi_turn.enable=true needs data.return_raw_chat=true (the "
                          "agent loop continues each prompt's chat messages), as in veRL's multi-turn examples")
        for key in ("tool_config_path", "interaction_config_path"):
            path = getattr(rollout.multi_turn, key)
            if path and not builtin.is_builtin(path) and not Path(path).expanduser().is_file():
                errors.append(f"actor_rollout_ref.rollout.multi_turn.{key}={path}: no such file")
    if rollout and rollout.name not in ROLLOUT_ENGINES:
        errors.append(f"actor_rollout_ref.rollout.name={rollout.name!r}: use one of {sorted(ROLLOUT_ENGINES)}")
    elif rollout and rollout.name == "vllm":
        try:
            check_vllm_version()
        except (ImportError, RuntimeError) as e:
            errors.append(str(e))
    elif rollout and rollout.name == "hf":
        _check_no_vllm_settings(arr.get("rollout") or {}, errors)
    if actor:
        if actor.policy_loss.loss_mode not in POLICY_LOSSES:
            errors.append(f"actor_rollout_ref.actor.policy_loss.loss_mode={actor.policy_loss.loss_mode!r}: use one of "
                          f"{sorted(POLICY_LOSSES)}")
        if actor.loss_agg_mode not in LOSS_AGG_MODES:
            errors.append(f"actor_rollout_ref.actor.loss_agg_mode={actor.loss_agg_mode!r}: use one of {LOSS_AGG_MODES}")
        if actor.kl_loss_type not in KL_PENALTIES:
            errors.append(f"actor_rollout_ref.actor.kl_loss_type={actor.kl_loss_type!r}: use one of {KL_PENALTIES}")
    estimator = setting(algo, "algorithm.adv_estimator")  # the YAML's default for configs built by hand
    if estimator not in ADV_ESTIMATORS:
        errors.append(f"algorithm.adv_estimator={estimator!r}: use one of {sorted(ADV_ESTIMATORS)}")
    if setting(algo, "algorithm.kl_penalty") not in KL_PENALTIES:
        errors.append(f"algorithm.kl_penalty={algo.get('kl_penalty')!r}: use one of {KL_PENALTIES}")
    from verlvl.reward.managers import REWARD_MANAGERS

    manager = setting(cfg.get("reward_model"), "reward_model.reward_manager")
    if manager not in REWARD_MANAGERS:
        errors.append(f"reward_model.reward_manager={manager!r}: use one of {sorted(REWARD_MANAGERS)}")
    reward_path = (cfg.get("custom_reward_function") or {}).get("path")
    if reward_path and str(reward_path).startswith("builtin://"):
        from verlvl.reward.function import RewardFunctionError, spec_from_config

        try:
            spec_from_config(cfg.get("custom_reward_function"))
        except RewardFunctionError as e:
            errors.append(str(e))
    elif reward_path and not Path(reward_path).expanduser().is_file():
        errors.append(f"custom_reward_function.path={reward_path}: no such file")

    model_path = (arr.get("model") or {}).get("path")
    if not model_path:
        errors.append("actor_rollout_ref.model.path is not set: give a model folder (or builtin://tiny-qwen2.5-vl)")
    elif not builtin.is_builtin(model_path) and not Path(model_path).expanduser().exists() and "/" not in model_path:
        errors.append(f"actor_rollout_ref.model.path={model_path}: no such folder")
    elif not Path(model_path).expanduser().exists() and re.search(r"global_step_\d+/actor/huggingface/?$", model_path):
        errors.append(f"actor_rollout_ref.model.path={model_path}: no such folder; it is a checkpoint's HF export, "
                      "so train the run that writes it first (from this directory when the path is relative)")
    train_files = data_cfg.train_files if data_cfg else ()
    val_files = data_cfg.val_files if data_cfg else ()
    if data_cfg and not train_files:
        errors.append("data.train_files is not set: give parquet file(s) written by a data_preprocess/ script")
    for key, files in (("data.train_files", train_files), ("data.val_files", val_files)):
        for f in files:
            if not builtin.is_builtin(f) and not sources.exists(f):  # a file, a folder or name@split
                errors.append(f"{key}: {f} does not exist; write it with a data_preprocess/ script (e.g. "
                              "python data_preprocess/geo3k.py) or fix the path")
    if errors:
        raise ConfigError("the config has problems:\n  - " + "\n  - ".join(dict.fromkeys(errors)))

    critic_enable = critic_cfg.get("enable")
    use_critic = (estimator == "gae") if critic_enable is None else bool(critic_enable)
    use_reference = bool(actor.use_kl_loss or setting(algo, "algorithm.use_kl_in_reward"))
    # One update per batch: the old log-probs are the rollout's own, unless the engine computes them with
    # other kernels: on GPU (bf16; vLLM's own attention, or hf's unsharded generate-time forward against the
    # FSDP2 mixed-precision one) the trainer recomputes them, so the ratio starts at 1 and the mismatch
    # metrics measure something. On CPU both engines compute in fp32 and agree with the actor to ~1e-6.
    on_policy = actor.ppo_epochs == 1 and actor.ppo_mini_batch_size == data_cfg.train_batch_size and not use_gpu
    resolve = builtin.resolve if resolve_builtins else (lambda p: p)
    return Derived(world, use_gpu, use_critic, use_reference, resolve(model_path),
                   tuple(resolve(f) for f in train_files), tuple(resolve(f) for f in val_files), on_policy)



def _check_values_not_done_here(cfg: dict, model: ModelConfig | None, errors: list[str]) -> None:
    """Keys verlvl has with one value only, or only some value types."""
    if (cfg.get("reward_model") or {}).get("enable"):
        errors.append("reward_model.enable=true: reward model workers are not supported; set false (or remove it) and "
                      "score with custom_reward_function (a rule, or a remote judge called from it)")
    trainer = cfg.get("trainer") or {}
    if trainer.get("val_only") and not (cfg.get("data") or {}).get("val_files"):
        errors.append("trainer.val_only=true evaluates on data.val_files, which is not set: give the files to evaluate")
    if model is not None:
        if not isinstance(model.override_config, dict):
            errors.append(f"actor_rollout_ref.model.override_config={model.override_config!r}: give a mapping of HF "
                          "config attributes, e.g. {attention_dropout: 0.0}")
        if model.custom_chat_template is not None and not isinstance(model.custom_chat_template, str):
            errors.append("actor_rollout_ref.model.custom_chat_template: give the Jinja template as a string")


# What configures the vLLM engine only: with the hf rollout these would change nothing, so they are refused.
VLLM_ONLY = ("tensor_model_parallel_size", "gpu_memory_utilization", "cpu_kv_cache_gb", "max_num_batched_tokens",
             "max_num_seqs", "enable_prefix_caching", "enable_chunked_prefill", "enforce_eager", "free_cache_engine",
             "load_format", "limit_images", "update_weights_bucket_megabytes", "max_model_len", "dtype",
             "engine_kwargs")


def _check_no_vllm_settings(rollout: dict, errors: list[str]) -> None:
    defaults = default_tree()["actor_rollout_ref"]["rollout"]
    changed = [k for k in VLLM_ONLY if k in rollout and rollout[k] != defaults.get(k)]
    if changed:
        errors.append(f"actor_rollout_ref.rollout.{{{', '.join(changed)}}} set the vLLM engine, but rollout.name=hf "
                      "(transformers' generate) has none of them: remove them, or set actor_rollout_ref.rollout."
                      "name=vllm")


def _check_filter_groups(algo: dict, errors: list[str]) -> None:
    groups = algo.get("filter_groups") or {}
    if groups.get("enable") and groups.get("metric") == "seq_final_reward" and algo.get("use_kl_in_reward"):
        errors.append("algorithm.filter_groups.metric=seq_final_reward with use_kl_in_reward: groups are filtered "
                      "before the KL term is known here; use seq_reward (or acc)")


def _try(errors: list[str], build):
    try:
        return build()
    except (ValueError, TypeError) as e:
        errors.append(str(e))
        return None
