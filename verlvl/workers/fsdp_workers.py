"""The worker classes the trainer drives: ActorRolloutRefWorker (roles chosen at creation) and CriticWorker."""

from __future__ import annotations

import dataclasses
import logging

import torch
import torch.distributed as dist

from verlvl.models.processor import load_processor, load_tokenizer
from verlvl.protocol import DataProto
from verlvl.single_controller import Dispatch, Worker, register
from verlvl.workers.actor import PPOActor, build_optimizer
from verlvl.workers.checkpoint_io import export_hf, load_sharded, save_sharded
from verlvl.workers.config import ActorConfig, CriticConfig, ModelConfig, RolloutConfig, from_mapping
from verlvl.workers.critic import PPOCritic, ValueModel
from verlvl.workers.fsdp_utils import (apply_fsdp2, freeze_vision_tower, full_state_dict, install_dummy_vision_pass,
                                       load_model)
from verlvl.utils.device import is_cuda_available
from verlvl.workers.rollout import ROLLOUT_ENGINES
from verlvl.workers.rollout.base import never_sampled_ids

log = logging.getLogger(__name__)
ROLES = ("actor", "rollout", "ref", "actor_rollout", "actor_rollout_ref")
# veRL keys accepted for compatibility that change nothing here.
VERL_ACTOR_KEYS = frozenset({"strategy", "ulysses_sequence_parallel_size", "use_torch_compile", "checkpoint",
                              "ppo_micro_batch_size", "use_remove_padding", "profiler", "use_fused_kernels"})
VERL_ROLLOUT_KEYS = frozenset({"mode", "ignore_eos", "log_prob_micro_batch_size", "disable_log_stats",
                                "calculate_log_probs", "multi_turn", "agent", "layered_summon"})
VERL_MODEL_KEYS = frozenset({"use_remove_padding", "use_liger", "external_lib", "override_config", "lora_rank",
                              "lora_alpha", "target_modules", "use_shm", "use_fused_kernels", "custom_chat_template"})


def _dp_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


class ActorRolloutRefWorker(Worker):
    """Holds the actor (FSDP2 + AdamW), its rollout engine (hf on the actor's own weights, or vllm fed
    them after each update), and/or the reference model, as `role` says. Config: the actor_rollout_ref
    section (model, actor, rollout, ref)."""

    def __init__(self, config: dict, role: str = "actor_rollout_ref"):
        super().__init__()
        if role not in ROLES:
            raise ValueError(f"role {role!r} is not one of {ROLES}")
        self.role = role
        self.has_actor, self.has_rollout = role.startswith("actor"), "rollout" in role
        self.has_ref = role in ("ref", "actor_rollout_ref")
        self.model_config = from_mapping(ModelConfig, config.get("model"), "actor_rollout_ref.model", VERL_MODEL_KEYS)
        self.actor_config = from_mapping(ActorConfig, config.get("actor"), "actor_rollout_ref.actor", VERL_ACTOR_KEYS)
        self.rollout_config = from_mapping(RolloutConfig, config.get("rollout"), "actor_rollout_ref.rollout",
                                           VERL_ROLLOUT_KEYS)
        self.ref_micro_batch = int((config.get("ref") or {}).get("log_prob_micro_batch_size_per_gpu",
                                                                 self.rollout_config.log_prob_micro_batch_size_per_gpu))
        self.build_rollout = ROLLOUT_ENGINES.lookup(self.rollout_config.name)
        self.rollout_config = dataclasses.replace(self.rollout_config, seed=int(config.get("seed", 0)))
        # The rollout mesh: ranks of one tensor-parallel engine get the same prompts; one returns them.
        tp = self.rollout_config.tensor_model_parallel_size if self.rollout_config.name != "hf" else 1
        self._register_dispatch_collect_info("rollout", self.rank // tp, self.rank % tp == 0)
        torch.manual_seed(int(config.get("seed", 0)) + self.rank)  # ranks sample differently

    @register(Dispatch.ONE_TO_ALL)
    def init_model(self) -> None:
        path = self.model_config.path
        self.tokenizer, self.processor = load_tokenizer(path), load_processor(path)
        self.actor = self.rollout = self.ref = None
        never_sampled = never_sampled_ids(self.tokenizer)  # the policy gives these probability 0
        if self.has_actor or self.has_rollout:
            model = load_model(path, self.model_config.enable_gradient_checkpointing,
                               self.model_config.trust_remote_code, self.model_config.attn_implementation)
            if self.actor_config.freeze_vision_tower:
                log.info("froze %d vision-tower parameters", freeze_vision_tower(model))
            model = self._shard(model, self.actor_config.fsdp_config)
            optimizer = scheduler = None
            if self.has_actor:
                optimizer, scheduler = build_optimizer(model, self.actor_config.optim)
            self.actor = PPOActor(model, self.actor_config, self.processor, optimizer, scheduler, _dp_size(),
                                  never_sampled)
            if self.has_rollout:
                self.rollout = self.build_rollout(model, path, self.tokenizer, self.processor, self.rollout_config,
                                                  self._compute_dtype())
                self.rollout.sync_weights(model)
        if self.has_ref:
            ref_model = load_model(path, trust_remote_code=self.model_config.trust_remote_code,
                                   attn_implementation=self.model_config.attn_implementation)
            ref_model.requires_grad_(False)
            self.ref = PPOActor(self._shard(ref_model, self.actor_config.fsdp_config), self.actor_config,
                                self.processor, dp_size=_dp_size(), never_sampled=never_sampled)

    def _compute_dtype(self) -> torch.dtype:
        mixed = self.actor_config.fsdp_config.mixed_precision and is_cuda_available() and dist.is_initialized()
        return torch.bfloat16 if mixed else torch.float32

    def _shard(self, model, fsdp_config):
        if dist.is_initialized():
            model = apply_fsdp2(model, fsdp_config.mixed_precision, fsdp_config.param_offload
                                or fsdp_config.optimizer_offload)
            install_dummy_vision_pass(model)
        return model

    @register(mesh_name="rollout")
    def generate_sequences(self, prompts: DataProto) -> DataProto:
        return self.rollout.generate_sequences(prompts)

    @register(Dispatch.ONE_TO_ALL)
    def sync_rollout_weights(self) -> None:
        """Give the rollout engine the actor's current weights (a no-op for hf, which shares them)."""
        if self.rollout is not None:
            self.rollout.sync_weights(self.actor.model)

    def _log_probs(self, actor: PPOActor, data: DataProto, micro: int, entropy: bool):
        cfg = self.rollout_config
        return actor.compute_log_prob(data, micro, data.meta_info.get("temperature", cfg.temperature), entropy,
                                      cfg.log_prob_use_dynamic_bsz, cfg.log_prob_max_token_len_per_gpu)

    @register(Dispatch.DP_COMPUTE_PROTO)
    def compute_log_prob(self, data: DataProto) -> DataProto:
        log_probs, entropy = self._log_probs(self.actor, data, self.rollout_config.log_prob_micro_batch_size_per_gpu,
                                             True)
        return DataProto.from_dict({"old_log_probs": log_probs, "entropys": entropy})

    @register(Dispatch.DP_COMPUTE_PROTO)
    def compute_ref_log_prob(self, data: DataProto) -> DataProto:
        log_probs, _ = self._log_probs(self.ref, data, self.ref_micro_batch, False)
        return DataProto.from_dict({"ref_log_prob": log_probs})

    @register(Dispatch.DP_COMPUTE_PROTO)
    def update_actor(self, data: DataProto) -> DataProto:
        rows = data.meta_info.get("ppo_mini_batch_rows") or (
            self.actor_config.ppo_mini_batch_size * self.rollout_config.n // _dp_size())
        temperature = data.meta_info.get("temperature", self.rollout_config.temperature)
        metrics = self.actor.update_policy(data, max(1, int(rows)), temperature)
        return DataProto(meta_info={"metrics": metrics})

    @register(Dispatch.ONE_TO_ALL)
    def save_checkpoint(self, path: str, hf_path: str | None = None) -> None:
        save_sharded(path, self.actor.model, self.actor.optimizer, self.actor.scheduler)
        if hf_path:
            export_hf(hf_path, self.actor.model, self.tokenizer, self.processor)

    @register(Dispatch.ONE_TO_ALL)
    def load_checkpoint(self, path: str) -> None:
        load_sharded(path, self.actor.model, self.actor.optimizer, self.actor.scheduler)
        if self.rollout is not None:
            self.rollout.sync_weights(self.actor.model)

    @register(Dispatch.ONE_TO_ALL)
    def get_full_state_dict(self, which: str = "actor") -> dict:
        model = (self.actor if which == "actor" else self.ref).model
        return full_state_dict(model)


class CriticWorker(Worker):
    """The critic (a value head on the backbone, FSDP2 + AdamW). Config: the critic section."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = from_mapping(CriticConfig, config, "critic", VERL_ACTOR_KEYS | {"ppo_micro_batch_size",
                                                                                     "forward_micro_batch_size_per_gpu",
                                                                                     "rollout_n"})
        self.rollout_n = int(config.get("rollout_n", 1))

    @register(Dispatch.ONE_TO_ALL)
    def init_model(self) -> None:
        path = self.config.model.path
        self.processor = load_processor(path)
        model = ValueModel(path, self.config.model.enable_gradient_checkpointing)
        if dist.is_initialized():
            model = apply_fsdp2(model, self.config.fsdp_config.mixed_precision, self.config.fsdp_config.param_offload)
            install_dummy_vision_pass(model)
        optimizer, scheduler = build_optimizer(model, self.config.optim)
        self.critic = PPOCritic(model, self.config, self.processor, optimizer, scheduler, _dp_size())

    @register(Dispatch.ONE_TO_ALL)
    def save_checkpoint(self, path: str) -> None:
        save_sharded(path, self.critic.model, self.critic.optimizer, self.critic.scheduler)

    @register(Dispatch.ONE_TO_ALL)
    def load_checkpoint(self, path: str) -> None:
        load_sharded(path, self.critic.model, self.critic.optimizer, self.critic.scheduler)

    @register(Dispatch.DP_COMPUTE_PROTO)
    def compute_values(self, data: DataProto) -> DataProto:
        return DataProto.from_dict({"values": self.critic.compute_values(data)})

    @register(Dispatch.DP_COMPUTE_PROTO)
    def update_critic(self, data: DataProto) -> DataProto:
        rows = data.meta_info.get("ppo_mini_batch_rows") or (
            self.config.ppo_mini_batch_size * self.rollout_n // _dp_size())
        return DataProto(meta_info={"metrics": self.critic.update_critic(data, max(1, int(rows)))})
