"""Typed worker configs with veRL's key names: actor_rollout_ref.{model,actor,ref,rollout}.* and critic.*."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any, Mapping

from verlvl.config.defaults import YAML, yaml_defaults

# A field's default written `= YAML` is conf/'s (config/defaults.py), written there only; a field the YAML
# lacks keeps its Python default. tests/trainer/test_yaml_defaults.py checks every field the YAML has.
_AR = "actor_rollout_ref"
_ACTOR, _ROLLOUT = f"{_AR}.actor", f"{_AR}.rollout"


def from_mapping(cls, mapping: Mapping[str, Any] | None, prefix: str, ignored: frozenset | None = None,
                 strict: bool = True):
    """Build dataclass `cls` from a mapping; nested dataclass fields recurse. veRL's keys that change
    nothing here (config/verl_keys.py, checked by check_config) are skipped. An unknown key is an error
    that names it with its full prefix and suggests the closest known key (`strict=False`: skipped, for
    check_config, which reports every unknown key of the tree itself)."""
    from verlvl.config.verl_keys import keys_under

    mapping = dict(mapping or {})
    ignored = keys_under(prefix) if ignored is None else ignored
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in mapping.items():
        if key in fields:
            sub_cls = _NESTED.get((cls.__name__, key))
            if sub_cls is None or isinstance(value, sub_cls):
                values[key] = value
            elif not isinstance(value, Mapping) and hasattr(sub_cls, "from_value"):
                values[key] = sub_cls.from_value(value)  # veRL's shape or verlvl's shorthand (policy_loss: vanilla)
            else:
                values[key] = from_mapping(sub_cls, value, f"{prefix}.{key}", strict=strict)
        elif key not in ignored and strict:
            close = difflib.get_close_matches(key, list(fields), n=1)
            raise ValueError(f"unknown key {prefix}.{key}" + (f"; did you mean {prefix}.{close[0]}?" if close else ""))
    try:
        return cls(**values)
    except ValueError as e:  # a message that starts with one of cls's keys gets the full prefix
        message = str(e)
        raise ValueError(f"{prefix}.{message}" if message.split(".")[0].split("=")[0] in fields else message) from None


@dataclass(frozen=True)
@yaml_defaults(f"{_ACTOR}.optim")  # the actor's; CriticConfig.optim: critic.optim's
class OptimConfig:
    lr: float = YAML
    weight_decay: float = YAML
    betas: tuple = YAML
    lr_warmup_steps: int = YAML  # -1: use lr_warmup_steps_ratio
    lr_warmup_steps_ratio: float = YAML
    lr_scheduler_type: str = YAML  # after warmup: constant | cosine (veRL's name)
    warmup_style: str | None = YAML  # veRL's older name for lr_scheduler_type; wins when set
    min_lr_ratio: float = YAML
    total_training_steps: int = YAML  # set by the trainer

    def __post_init__(self):
        for key in ("lr_scheduler_type", "warmup_style"):
            if getattr(self, key) not in ("constant", "cosine", None):
                raise ValueError(f"{key}={getattr(self, key)!r}: use constant or cosine")

    @property
    def schedule(self) -> str:
        """constant | cosine after warmup."""
        return self.warmup_style or self.lr_scheduler_type


@dataclass(frozen=True)
@yaml_defaults(f"{_ACTOR}.fsdp_config")
class FSDPConfig:
    """Offload switches as in veRL (CUDA only: on CPU everything already lives on the host)."""

    param_offload: bool = YAML  # sharded parameters (and gradients) on the host between worker calls
    optimizer_offload: bool = YAML  # Adam's moments on the host between updates
    offload_policy: bool = YAML  # FSDP2's CPUOffloadPolicy: shards on the host, each layer copied in to compute
    # CUDA only (CPU computes in fp32): veRL's {param_dtype, reduce_dtype, buffer_dtype}; None or true: bf16
    # compute with fp32 reduce; false: fp32 compute
    mixed_precision: bool | dict | None = YAML

    def __post_init__(self):
        self.dtypes()  # a wrong dtype name is an error here, naming the key

    def dtypes(self):
        """(param_dtype, reduce_dtype) of the mixed-precision policy, or None for fp32 compute."""
        mp = self.mixed_precision
        if mp is False:
            return None
        if mp is None or mp is True:
            return torch_dtype("bf16"), torch_dtype("fp32")
        if not isinstance(mp, Mapping):
            raise ValueError(f"mixed_precision={mp!r}: use true, false or a mapping of "
                             "param_dtype / reduce_dtype / buffer_dtype")
        unknown = sorted(set(mp) - {"param_dtype", "reduce_dtype", "buffer_dtype"})
        if unknown:
            raise ValueError(f"mixed_precision.{unknown[0]} is not a key of mixed_precision: use param_dtype, reduce_dtype, "
                             "buffer_dtype")
        if torch_dtype(mp.get("buffer_dtype") or "fp32", "buffer_dtype") != torch_dtype("fp32"):
            raise ValueError("mixed_precision.buffer_dtype: FSDP2 keeps buffers in fp32 here; remove it "
                             "or set fp32")
        return (torch_dtype(mp.get("param_dtype") or "bf16", "param_dtype"),
                torch_dtype(mp.get("reduce_dtype") or "fp32", "reduce_dtype"))


_DTYPES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16", "half": "float16",
           "fp32": "float32", "float32": "float32", "float": "float32"}


def torch_dtype(name: str, key: str = "dtype"):
    """veRL's dtype names (bf16, bfloat16, fp16, fp32, ...) as a torch dtype."""
    import torch

    if name not in _DTYPES:
        raise ValueError(f"mixed_precision.{key}={name!r}: use one of {sorted(_DTYPES)}")
    return getattr(torch, _DTYPES[name])


@dataclass(frozen=True)
@yaml_defaults(f"{_ACTOR}.policy_loss")
class PolicyLossConfig:
    """actor.policy_loss as veRL writes it; a plain string is its loss_mode."""

    loss_mode: str = YAML
    clip_cov_ratio: float = YAML  # loss_mode=clip_cov: fraction of tokens clipped by covariance
    clip_cov_lb: float = YAML  # clip_cov: covariance band
    clip_cov_ub: float = YAML
    kl_cov_ratio: float = YAML  # loss_mode=kl_cov: fraction of tokens given the KL penalty
    ppo_kl_coef: float = YAML  # kl_cov: its coefficient

    @classmethod
    def from_value(cls, value) -> "PolicyLossConfig":
        if not isinstance(value, str):
            raise ValueError(f"actor_rollout_ref.actor.policy_loss={value!r}: use a loss name or a mapping with loss_mode")
        return cls(loss_mode=value)


@dataclass(frozen=True)
@yaml_defaults(_ACTOR, policy_loss=PolicyLossConfig, optim=OptimConfig, fsdp_config=FSDPConfig)
class ActorConfig:
    ppo_mini_batch_size: int = YAML  # prompts per optimizer step, before rollout.n
    ppo_micro_batch_size_per_gpu: int = YAML  # rows per forward/backward
    use_dynamic_bsz: bool = YAML
    ppo_max_token_len_per_gpu: int = YAML
    ppo_epochs: int = YAML
    shuffle: bool = YAML
    clip_ratio: float = YAML
    clip_ratio_low: float | None = YAML
    clip_ratio_high: float | None = YAML
    clip_ratio_c: float = YAML
    loss_agg_mode: str = YAML
    policy_loss: PolicyLossConfig = YAML
    tis_imp_ratio_cap: float = YAML  # > 0: truncated importance sampling against the rollout's log-probs
    entropy_coeff: float = YAML
    use_kl_loss: bool = YAML
    kl_loss_coef: float = YAML
    kl_loss_type: str = YAML
    grad_clip: float = YAML
    freeze_vision_tower: bool = YAML
    optim: OptimConfig = YAML
    fsdp_config: FSDPConfig = YAML


@dataclass(frozen=True)
@yaml_defaults(f"{_AR}.model")
class ModelConfig:
    path: str = YAML
    external_lib: str | None = YAML  # a user module (name or .py path) imported first: its registrations
    enable_gradient_checkpointing: bool = YAML
    trust_remote_code: bool = YAML
    attn_implementation: str | None = YAML  # None: transformers' default (sdpa); or flash_attention_2
    use_remove_padding: bool = YAML  # padding-free (packed) forwards: flash-attention varlen on GPU, sdpa on CPU
    custom_chat_template: str | None = YAML  # a Jinja chat template used instead of the tokenizer's
    override_config: dict = YAML  # set on the HF config at load (engine/loading.py)
    lora_rank: int = YAML  # > 0: train LoRA adapters of this rank on the language model (engine/lora.py)
    lora_alpha: float = YAML  # the adapters' scaling is lora_alpha / lora_rank
    target_modules: Any = YAML  # "all-linear" or a list of module names (q_proj, v_proj, ...)
    exclude_modules: str | None = YAML  # a regex of module names left alone (None: the vision tower)
    lora_adapter_path: str | None = YAML  # start from this peft adapter folder


@dataclass(frozen=True)
@yaml_defaults(f"{_ROLLOUT}.multi_turn")
class MultiTurnConfig:
    """actor_rollout_ref.rollout.multi_turn: tool-using rollouts (workers/rollout/agent_loop.py), veRL's names."""

    enable: bool = YAML
    max_assistant_turns: int | None = YAML  # None: until the response budget ends
    max_user_turns: int | None = YAML  # tool turns
    tool_config_path: str | None = YAML  # veRL's YAML: tools: [{class_name, config, tool_schema}]
    interaction_config_path: str | None = YAML  # veRL's YAML: interaction: [{name, class_name, config}]
    max_parallel_calls: int = YAML  # tool calls run per assistant turn (the rest are dropped)
    max_tool_response_length: int = YAML  # characters of a tool's text kept
    tool_response_truncate_side: str = YAML  # left | middle | right
    tool_timeout_s: float = YAML  # a call slower than this is an error observation
    tokenization_sanity_check_mode: str = YAML  # strict: each trajectory equals the template's render | disable
    format: str = YAML  # Qwen's <tool_call>{json}</tool_call>

    def __post_init__(self):
        checks = {"tool_response_truncate_side": ("left", "middle", "right"),
                  "tokenization_sanity_check_mode": ("strict", "disable"), "format": ("hermes",)}
        for key, allowed in checks.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key}={getattr(self, key)!r}: use one of {', '.join(allowed)}")
        if self.tool_timeout_s <= 0:
            raise ValueError(f"tool_timeout_s={self.tool_timeout_s}: must be > 0")


@dataclass(frozen=True)
class SamplingConfig:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    do_sample: bool = True


@dataclass(frozen=True)
@yaml_defaults(_ROLLOUT, val_kwargs=SamplingConfig, multi_turn=MultiTurnConfig)
class RolloutConfig:
    name: str = YAML
    n: int = YAML
    temperature: float = YAML
    top_p: float = YAML
    top_k: int = YAML
    do_sample: bool = YAML
    ignore_eos: bool = YAML  # generate response_length tokens, past EOS
    response_length: int = YAML  # the YAML's ${data.max_response_length}: data's default (512) here
    micro_batch_size: int | None = YAML  # hf: rows per generate call (None: the whole batch at once)
    log_prob_micro_batch_size_per_gpu: int = YAML
    log_prob_use_dynamic_bsz: bool = YAML  # ${...}: the actor's default, as the YAML's interpolation
    log_prob_max_token_len_per_gpu: int = YAML  # ${...}: the actor's default
    val_kwargs: SamplingConfig = YAML
    # the vllm engine (ignored by hf)
    # ${data.max_prompt_length}: with response_length, the engine's max_model_len unless that is set
    prompt_length: int = YAML
    max_model_len: int | None = YAML
    tensor_model_parallel_size: int = YAML  # GPUs per engine; the actor's ranks form groups of this size
    dtype: str = YAML  # auto: the actor's compute dtype (bf16 with mixed precision on CUDA, else fp32)
    gpu_memory_utilization: float = YAML  # fraction of GPU memory for weights + KV cache
    cpu_kv_cache_gb: float = YAML  # CPU only: KV cache size (vLLM's CPU backend has no utilisation knob)
    max_num_batched_tokens: int = YAML
    max_num_seqs: int = YAML
    enable_prefix_caching: bool = YAML
    enable_chunked_prefill: bool = YAML
    enforce_eager: bool = YAML  # no CUDA graphs: slower decoding, faster start and less memory
    free_cache_engine: bool = YAML  # CUDA: sleep (weights to CPU, KV cache freed) between generations
    load_format: str = YAML  # the checkpoint; "dummy" (random) leaves vLLM-only parameters random
    limit_images: int | None = YAML  # images per prompt vLLM reserves room for (None: vLLM's default)
    update_weights_bucket_megabytes: int = YAML  # weight sync gathers at most this much at once
    seed: int = 0  # the engine's sampling seed; the worker sets trainer.seed
    engine_kwargs: dict = YAML  # engine_kwargs.vllm.*: passed to vllm.LLM as is
    check_tokens: str = YAML  # the image-token guard: first_step | every_step | off
    multi_turn: MultiTurnConfig = YAML

    def __post_init__(self):
        if self.tensor_model_parallel_size < 1:
            raise ValueError("actor_rollout_ref.rollout.tensor_model_parallel_size must be >= 1")
        if self.check_tokens not in ("first_step", "every_step", "off"):
            raise ValueError(f"actor_rollout_ref.rollout.check_tokens={self.check_tokens!r}: use first_step, "
                             "every_step or off")


@dataclass(frozen=True)
@yaml_defaults(f"{_AR}.ref", fsdp_config=FSDPConfig)
class RefConfig:
    """actor_rollout_ref.ref: the frozen reference policy (bf16 weights on CUDA: it never steps)."""

    log_prob_micro_batch_size_per_gpu: int | None = YAML  # None: the rollout's
    log_prob_use_dynamic_bsz: bool | None = YAML
    log_prob_max_token_len_per_gpu: int | None = YAML
    fsdp_config: FSDPConfig = YAML


@dataclass(frozen=True)
@yaml_defaults("critic", optim=OptimConfig, fsdp_config=FSDPConfig, model=ModelConfig)
class CriticConfig:
    # The YAML's ${actor_rollout_ref...} interpolations resolve to the actor's defaults here (a composed
    # config has its own values)
    ppo_mini_batch_size: int = YAML
    ppo_micro_batch_size_per_gpu: int = YAML
    use_dynamic_bsz: bool = YAML
    ppo_max_token_len_per_gpu: int = YAML
    ppo_epochs: int = YAML
    cliprange_value: float = YAML
    loss_agg_mode: str = YAML
    grad_clip: float = YAML
    optim: OptimConfig = YAML
    fsdp_config: FSDPConfig = YAML
    model: ModelConfig = YAML


_NESTED = {
    ("ActorConfig", "optim"): OptimConfig, ("ActorConfig", "fsdp_config"): FSDPConfig,
    ("ActorConfig", "policy_loss"): PolicyLossConfig,
    ("RolloutConfig", "val_kwargs"): SamplingConfig, ("RolloutConfig", "multi_turn"): MultiTurnConfig,
    ("RefConfig", "fsdp_config"): FSDPConfig,
    ("CriticConfig", "optim"): OptimConfig, ("CriticConfig", "fsdp_config"): FSDPConfig,
    ("CriticConfig", "model"): ModelConfig,
}
