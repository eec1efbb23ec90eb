"""veRL's keys that change nothing here: each with the values accepted (veRL's default, or what verlvl
always does) and, for any other value, why it is refused and what to do. Keys verlvl implements are in
the YAML (conf/) instead; a key in neither is unknown."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

AR = "actor_rollout_ref"
SP = "sequence parallelism (Ulysses) is not supported; remove it or set 1"
STRATEGY = "verlvl trains with FSDP2 only; remove it or set fsdp2"
DEPRECATED_MICRO = "is veRL's deprecated global micro-batch size; remove it and set {alt} (rows per worker)"
NOT_YET = "is not supported yet; remove it (or set {default})"


@dataclass(frozen=True)
class VerlKey:
    """A veRL key that changes nothing here when its value is one of `accepted` (or `accepts(value)`)."""

    accepted: tuple = ()
    refusal: str = "is not supported; remove it"
    accepts_fn: Callable[[Any], bool] | None = None

    def accepts(self, value: Any) -> bool:
        if self.accepts_fn is not None:
            return self.accepts_fn(value)
        return any(same_value(value, a) for a in self.accepted)


def same_value(value: Any, expected: Any) -> bool:
    """Equal as config values: True is not 1, 1.0 is 1, a list equals a tuple."""
    if isinstance(value, bool) or isinstance(expected, bool):
        return type(value) is type(expected) and value == expected
    if isinstance(value, (list, tuple)) and isinstance(expected, (list, tuple)):
        return len(value) == len(expected) and all(same_value(a, b) for a, b in zip(value, expected))
    if isinstance(value, dict) and isinstance(expected, dict):
        return value.keys() == expected.keys() and all(same_value(value[k], expected[k]) for k in value)
    return value == expected


def default(*values, why: str = "is not supported; remove it") -> VerlKey:
    return VerlKey(tuple(values), why)


def off(flag: str = "enable", why: str = "is not supported; remove it") -> VerlKey:
    """A veRL sub-tree accepted while its `flag` is false (its other keys then change nothing in veRL either)."""
    return VerlKey((), why, lambda v: v is None or (isinstance(v, dict) and not v.get(flag)))


def _each(prefixes, entries: dict[str, VerlKey]) -> dict[str, VerlKey]:
    return {f"{p}.{k}": v for p in prefixes for k, v in entries.items()}


def _checkpoint_contents(v) -> bool:
    return v is None or (isinstance(v, (list, tuple)) and {"model", "optimizer", "extra"} <= set(v)
                         <= {"model", "optimizer", "extra", "hf_model"})


MODEL = {
    "use_shm": default(False, why="loading the model through shared memory is not supported; remove it"),
    "use_liger": default(False, why="Liger kernels are not supported; remove it (log-probs are computed in "
                                    "chunks here, without the full-vocabulary logits)"),
    # verlvl always computes log-probs and entropy in chunks, without the full-vocabulary logits: what
    # veRL's fused kernels are for; either value trains the same here.
    "use_fused_kernels": default(False, True),
    "fused_kernel_options.impl_backend": default("torch", "triton"),
    "lora": off("rank", why="is veRL's Megatron LoRA block; use model.lora_rank, lora_alpha, target_modules"),
    "hf_config_path": default(None, why="a separate HF config folder is not supported; put config.json in "
                                        "model.path (or use model.override_config)"),
    "tokenizer_path": default(None, why="a separate tokenizer folder is not supported; the tokenizer is read "
                                        "from model.path"),
    "enable_activation_offload": default(False, why="activation offload is not supported; remove it (use "
                                                    "enable_gradient_checkpointing to save activation memory)"),
    "tiled_mlp": off("enabled", why="tiled MLP is not supported; remove it"),
    "mtp": off(why="multi-token prediction is not supported; remove it"),
}

FSDP = {
    "strategy": default("fsdp", "fsdp2", why=STRATEGY),
    "ulysses_sequence_parallel_size": default(1, why=SP),
    "wrap_policy": VerlKey((), "FSDP2 shards each decoder layer here; remove it",
                           lambda v: not v or dict(v) == {"min_num_params": 0}),
    "reshard_after_forward": default(True, why="parameters are always resharded after the forward here; remove it"),
    "fsdp_size": default(-1, why="hybrid sharding is not supported: the model is sharded over all workers; "
                                 "remove it or set -1"),
    "forward_prefetch": default(False, why="forward prefetch is not supported; remove it"),
    "model_dtype": default("fp32", "float32", why="the trained weights are fp32 here (bf16 compute through "
                                                  "mixed_precision); remove it"),
    "use_orig_params": default(False, True),  # FSDP1's flag: FSDP2 always keeps the original parameters
    "seed": default(42, why="set trainer.seed instead"),
    "full_determinism": default(False, why="is not supported; remove it"),
    "entropy_from_logits_with_chunking": default(False, True),  # entropy is always computed in chunks here
    "entropy_from_logits_chunk_size": default(2048, why="verlvl picks its own chunk size; remove it"),
    "entropy_checkpointing": default(False, why="entropy recomputation is not supported; remove it"),
    "use_torch_compile": default(True, False),  # nothing is compiled here; both values train the same
    "pad_to_length": default(False, why="is not supported; remove it"),
    "pad_to_length_bucket": default(1024, why="is not supported; remove it"),
    "forward_only": default(False, True),
    "dtype": default("bfloat16", "bf16", why="the CUDA compute dtype is bf16 here; use fsdp_config.mixed_precision "
                                             "to change it"),
    "qat": off(why="quantisation-aware training is not supported; remove it"),
    "turbo_config": VerlKey(({}, None), "is read by veRL's turbo engine only; remove it"),
}

WORKER = {  # actor and ref (and critic) keys beside fsdp_config
    "strategy": default("fsdp", "fsdp2", why=STRATEGY),
    "ulysses_sequence_parallel_size": default(1, why=SP),
    "use_torch_compile": default(True, False),
    "entropy_from_logits_with_chunking": default(False, True),
    "entropy_from_logits_chunk_size": default(2048, why="verlvl picks its own chunk size; remove it"),
    "entropy_checkpointing": default(False, why="entropy recomputation is not supported; remove it"),
    "pad_to_length": default(False, why="is not supported; remove it"),
    "profiler": off(why="veRL's profiler is not supported; remove it"),
    "router_replay": VerlKey((), "MoE router replay is not supported; remove it",
                             lambda v: not v or (v.get("mode") or "disabled") == "disabled"),
    "rollout_n": VerlKey((None,), "is derived from actor_rollout_ref.rollout.n here; remove it"),
    "use_fused_kernels": default(False, True),
    "use_remove_padding": default(None, why="is read from actor_rollout_ref.model.use_remove_padding here; set that"),
}

OPTIM = {
    "optimizer": default("AdamW", why="only AdamW is supported; remove it"),
    "optimizer_impl": default("torch.optim", why="only torch.optim's AdamW is supported; remove it"),
    "clip_grad": default(1.0, why="set actor.grad_clip (critic.grad_clip) instead"),
    "num_cycles": default(0.5, why="the cosine schedule decays once to min_lr_ratio here; remove it"),
    "zero_indexed_step": default(True, why="is not supported; remove it"),
    "override_optimizer_config": default(None, why="extra optimizer arguments are not supported; remove it"),
}

ACTOR = {
    "ppo_micro_batch_size": default(None, why=DEPRECATED_MICRO.format(alt="ppo_micro_batch_size_per_gpu")),
    "checkpoint.save_contents": VerlKey((), "checkpoints always hold model, optimizer and extra state (and the HF "
                                            "export); remove it", _checkpoint_contents),
    "checkpoint.load_contents": VerlKey((), "resume always loads model, optimizer and extra state; remove it",
                                        _checkpoint_contents),
    "checkpoint.async_save": default(False, why="asynchronous checkpoint saving is not supported; remove it"),
    "checkpoint.strict": default(True, why="checkpoints are always loaded strictly; remove it"),
    "tau_pos": default(1.0, why="is read by veRL's sapo loss, which is not registered here; remove it"),
    "tau_neg": default(1.05, why="is read by veRL's sapo loss, which is not registered here; remove it"),
    "loss_scale_factor": default(None, why="is not supported; remove it"),
    "calculate_entropy": default(False, True),  # actor/entropy is always computed and logged here
    "calculate_sum_pi_squared": default(False, why="is not supported; remove it"),
    "use_prefix_grouper": default(False, why="prefix grouping is not supported; remove it"),
    "data_loader_seed": default(42, why="mini-batch shuffling is seeded by verlvl; remove it"),
    "qat": off(why="quantisation-aware training is not supported; remove it"),
    "policy_loss.dro_beta": default(None, why="is read by veRL's DRO loss, which is not registered here; remove it"),
}

ROLLOUT = {
    "mode": default("sync", "async"),  # one batch of prompts per engine call either way (single-turn)
    "nnodes": default(0, why="a separate rollout cluster is not supported: the rollout shares the actor's "
                             "workers; remove it"),
    "n_gpus_per_node": VerlKey((None,), "is trainer.n_gpus_per_node here; remove it"),
    "full_determinism": default(False, why="is not supported; remove it"),
    "seed": default(42, why="the rollout's sampling seed is trainer.seed here (plus the rank); set that"),
    "cudagraph_capture_sizes": default(None, why="is not supported; remove it (enforce_eager=false captures "
                                                 "vLLM's default sizes)"),
    "data_parallel_size": default(1, why="engine data parallelism is not supported: each group of "
                                         "tensor_model_parallel_size workers runs one engine; remove it"),
    "expert_parallel_size": default(1, why="expert parallelism is not supported; remove it"),
    "pipeline_model_parallel_size": default(1, why="pipeline parallelism is not supported; remove it"),
    "logprobs_mode": default("processed_logprobs", why="rollout log-probs are always those of the sampling "
                                                       "distribution here; remove it"),
    "scheduling_policy": default("fcfs", why="is not supported; remove it"),
    "layered_summon": default(False, why="FSDP1's layer-by-layer gather for LoRA is not needed here (adapters "
                                         "are merged from the FSDP2 shards); remove it"),
    "log_prob_micro_batch_size": default(None, why=DEPRECATED_MICRO.format(alt="log_prob_micro_batch_size_per_gpu")),
    "disable_log_stats": default(True, why="vLLM's stats log is not exposed; remove it"),
    "over_sample_rate": default(0, why="over-sampling is not supported; remove it (see algorithm.filter_groups)"),
    "multi_stage_wake_up": default(False, True),  # the engine always wakes weights first, the KV cache after sync
    "calculate_log_probs": default(True, False),  # the rollout's log-probs are always returned here
    "skip_tokenizer_init": default(True, False),  # the engine is always given token ids
    "engine_kwargs.sglang": VerlKey(({}, None), "sglang is not a rollout engine here; remove it"),
    "engine_kwargs.trtllm": VerlKey(({}, None), "trtllm is not a rollout engine here; remove it"),
    # multi_turn: the keys verlvl implements are YAML keys (conf/actor_rollout_ref/default.yaml); these are not
    "multi_turn.max_turns": default(None, why="is veRL's older name; set multi_turn.max_assistant_turns"),
    "multi_turn.function_tool_path": default(None, why="@function_tool files are not supported; declare the tools "
                                                       "in multi_turn.tool_config_path"),
    "multi_turn.use_inference_chat_template": default(False, why="the trajectory is always the tokens the model "
                                                                 "produced; remove it"),
    "multi_turn.num_repeat_rollouts": default(None, why="is not supported; use rollout.n"),
    "multi_turn.max_tokens_per_turn": default(None, why="is not supported; turns share rollout.response_length"),
    "agent": VerlKey((), "custom agent loops are not supported; remove it (multi_turn.enable runs the tool "
                         "agent loop)", lambda v: not v or (
        (v.get("default_agent_loop") or "single_turn_agent") in ("single_turn_agent", "tool_agent")
        and not v.get("agent_loop_config_path") and not (v.get("custom_async_server") or {}).get("path"))),
    "checkpoint_engine.backend": default("naive", why="weights reach the engine in buckets here; remove it"),
    "checkpoint_engine.update_weights_bucket_megabytes": default(
        2048, why="set actor_rollout_ref.rollout.update_weights_bucket_megabytes instead"),
    "checkpoint_engine.engine_kwargs": VerlKey(({}, None), "is not supported; remove it"),
    "checkpoint_engine.custom_backend_module": default(None, why="is not supported; remove it"),
    "trace": VerlKey((), "rollout tracing is not supported; remove it", lambda v: not v or not v.get("backend")),
    "enable_rollout_routing_replay": default(False, why="MoE routing replay is not supported; remove it"),
    "moe_load_balance_metrics_interval": default(0, why="is not supported; remove it"),
    "profiler": off(why="veRL's profiler is not supported; remove it"),
    "prometheus": off(why="is not supported; remove it"),
    "quantization": default(None, why="rollout quantisation is not supported; remove it"),
    "quantization_config_file": default(None, why="rollout quantisation is not supported; remove it"),
    "mtp": off(why="multi-token prediction is not supported; remove it"),
    "qat": off(why="quantisation-aware training is not supported; remove it"),
    "disaggregation": off("enabled", why="prefill/decode disaggregation is not supported; remove it"),
}

CRITIC = {
    "ppo_micro_batch_size": default(None, why=DEPRECATED_MICRO.format(alt="critic.ppo_micro_batch_size_per_gpu")),
    "forward_micro_batch_size": default(None, why=DEPRECATED_MICRO.format(alt="critic.ppo_micro_batch_size_per_gpu")),
    "forward_micro_batch_size_per_gpu": default(None, why="the critic forwards in ppo_micro_batch_size_per_gpu rows "
                                                          "here; remove it"),
    "forward_max_token_len_per_gpu": default(None, why="the critic forwards within ppo_max_token_len_per_gpu here; "
                                                       "remove it"),
    "shuffle": default(False, why="the critic's mini-batches are not shuffled here; remove it"),
    "data_loader_seed": default(42, why="remove it"),
    "loss_scale_factor": default(None, why="is not supported; remove it"),
    "checkpoint.save_contents": ACTOR["checkpoint.save_contents"],
    "checkpoint.load_contents": ACTOR["checkpoint.load_contents"],
    "checkpoint.async_save": ACTOR["checkpoint.async_save"],
    "model.override_config": VerlKey(({}, None), "is not supported for the critic yet; remove it"),
    "model.custom_chat_template": default(None, why="the critic reads the actor's prompts; set "
                                                    "actor_rollout_ref.model.custom_chat_template"),
}

DATA = {
    "tokenizer": default(None, why="the tokenizer is the model's (actor_rollout_ref.model.path); remove it"),
    "use_shm": default(False, why="reading data through shared memory is not supported; remove it"),
    "custom_cls": VerlKey((), "custom dataset classes are not supported; write parquet files in veRL's schema",
                          lambda v: not v or not v.get("path")),
    "return_full_prompt": default(False, why="is not supported; remove it"),
    "return_raw_input_ids": default(False, why="is not supported; remove it"),
    "trust_remote_code": default(False, why="set actor_rollout_ref.model.trust_remote_code instead"),
    "sampler": VerlKey((), "custom samplers are not supported; remove it (data.shuffle and data.seed order the rows)",
                       lambda v: not v or not v.get("class_path")),
    "datagen": VerlKey((), "dynamic data generation is not supported; remove it", lambda v: not v or not v.get("path")),
    "video_key": default("videos", why="videos are not supported; remove it"),
    "audio_key": default("audios", why="audio is not supported; remove it"),
    "filter_overlong_prompts_workers": default(1, why="overlong prompts are filtered in one process here; remove it"),
    "return_multi_modal_inputs": default(True, why="processed image inputs are always returned here; remove it"),
    "image_patch_size": default(14, 16),  # read from the model's processor here
    "tool_config_path": default(None, why="tools are not supported yet; remove it"),
    "function_tool_path": default(None, why="tools are not supported yet; remove it"),
    "validation_shuffle": default(False, why="validation rows are always in file order here; remove it"),
    "dataloader_pin_memory": default(False, True),  # batches stay on the host until a worker moves them
    "mm_processor_kwargs": VerlKey(({}, None), "processor arguments are not supported; use data.min_pixels / "
                                               "data.max_pixels to size images"),
}

ALGORITHM = {
    "filter_groups.max_inflight_gen_batches": default(1, why="generation batches are made one at a time here; "
                                                             "remove it"),
    "use_pf_ppo": default(False, why="PF-PPO (reweighting samples by reward) is not supported; remove it"),
    "pf_ppo.reweight_method": default("pow", why="PF-PPO is not supported; remove it"),
    "pf_ppo.weight_pow": default(2.0, why="PF-PPO is not supported; remove it"),
}

REWARD_MODEL = {  # veRL's reward-model workers; verlvl scores on the driver (rules, custom functions, judges)
    **{k: default(None, False, why="reward model workers are not supported; remove it (score with "
                                   "custom_reward_function: a rule or a remote judge)")
       for k in ("enable_resource_pool", "use_dynamic_bsz", "launch_reward_fn_async")},
    **{k: default(None, why="reward model workers are not supported; remove it (score with custom_reward_function: "
                            "a rule or a remote judge)")
       for k in ("n_gpus_per_node", "nnodes", "reward_loop_source", "reward_loop_module_path",
                 "reward_loop_class_name", "micro_batch_size", "micro_batch_size_per_gpu", "max_length",
                 "forward_max_token_len_per_gpu", "ulysses_sequence_parallel_size")},
    "strategy": default(None, "fsdp", "fsdp2", why=STRATEGY),
    "model": off("path", why="reward model workers are not supported; remove it (score with custom_reward_function)"),
    "rollout": off("name", why="reward model workers are not supported; remove it"),
    "sandbox_fusion": off("url", why="sandbox fusion is not supported; remove it"),
}

TRAINER = {
    "esi_redundant_time": default(0, why="is not supported; remove it"),
    "default_hdfs_dir": default(None, why="HDFS upload is not supported; checkpoints stay in default_local_dir"),
    "del_local_ckpt_after_load": default(False, why="is not supported; remove it"),
    "ray_wait_register_center_timeout": default(300, why="is not supported; remove it"),
    "use_v1": default(True, False),  # veRL's trainer generations; verlvl has one, the same algorithm
    "v1": VerlKey((), "only the synchronous trainer is supported; remove it",
                  lambda v: not v or (v.get("trainer_mode") or "sync") == "sync"),
    "use_legacy_worker_impl": default("auto", "disable", "enable"),  # worker generations of veRL; one here
}

TOP_LEVEL = {
    "global_profiler": VerlKey((), "veRL's profiler is not supported; remove it", lambda v: not v or not v.get("tool")),
    "transfer_queue": off(why="the transfer queue is not supported; remove it"),
    "distillation": off("enabled", why="distillation is not supported; remove it"),
    "sandbox_fusion": off("url", why="sandbox fusion is not supported; remove it"),
    "skip": VerlKey((), "rollout dumps for skipping are not supported; remove it",
                    lambda v: not v or not any((s or {}).get("enable") for s in v.values() if isinstance(s, dict))),
    "ray_kwargs.ray_init.runtime_env": VerlKey((), "a Ray runtime_env is not supported; remove it",
                                               lambda v: not v or all(x in (None, {}, []) for x in v.values())),
    "ray_kwargs.timeline_json_file": default(None, why="the Ray timeline is not supported; remove it"),
    # veRL's newer `reward` section: verlvl reads the legacy names
    "reward.num_workers": default(8, why="set reward_model.num_workers instead"),
    "reward.custom_reward_function.path": default(None, why="set custom_reward_function.path instead"),
    "reward.custom_reward_function.name": default("compute_score", None, why="set custom_reward_function.name instead"),
    "reward.reward_manager.name": default("naive", why="set reward_model.reward_manager instead"),
    "reward.reward_manager.source": default("register", why="reward managers come from the registry here; set "
                                                            "reward_model.reward_manager"),
    "reward.reward_manager.module": off("path", why="set reward_model.reward_manager to a registered manager"),
    "reward.reward_model": off(why="reward model workers are not supported; score with custom_reward_function"),
    "reward.sandbox_fusion": off("url", why="sandbox fusion is not supported; remove it"),
}

VERL_KEYS: dict[str, VerlKey] = {
    **_each([f"{AR}.model", "critic.model"], MODEL),
    **_each([f"{AR}.actor.fsdp_config", f"{AR}.ref.fsdp_config", "critic.fsdp_config"], FSDP),
    **_each([f"{AR}.actor", f"{AR}.ref", "critic"], WORKER),
    **_each([f"{AR}.actor.optim", "critic.optim"], OPTIM),
    **_each([f"{AR}.actor"], ACTOR),
    f"{AR}.ref.log_prob_micro_batch_size": default(
        None, why=DEPRECATED_MICRO.format(alt="actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu")),
    f"{AR}.nccl_timeout": default(600, why="is not supported; remove it"),
    **_each([f"{AR}.rollout"], ROLLOUT),
    **_each(["critic"], CRITIC),
    **_each(["data"], DATA),
    **_each(["algorithm"], ALGORITHM),
    **_each(["reward_model"], REWARD_MODEL),
    **_each(["trainer"], TRAINER),
    **TOP_LEVEL,
}


@functools.lru_cache(maxsize=None)
def keys_under(prefix: str) -> frozenset[str]:
    """The first component of each veRL key under `prefix` (e.g. 'checkpoint' for actor.checkpoint.async_save)."""
    start = prefix + "."
    return frozenset(k[len(start):].split(".")[0] for k in VERL_KEYS if k.startswith(start))
