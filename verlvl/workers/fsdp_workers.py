"""The worker classes the trainer drives: ActorRolloutRefWorker (roles chosen at creation) and CriticWorker.

Every method that takes a batch passes the device boundary (engine/placement.py): its DataProto arrives on
the worker's device, its result leaves on the CPU. Models whose fsdp_config says param_offload live on the
host between calls and come to the device for the duration of one (`_resident`)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging

import torch
import torch.distributed as dist

from verlvl.config.verl_keys import keys_under
from verlvl.engine.checkpoint import export_hf, load_sharded, save_sharded
from verlvl.engine.forward import PixelStore, install_dummy_vision_pass
from verlvl.engine.fsdp import apply_fsdp2, compute_dtype, freeze_vision_tower, fsdp_kwargs, move_model
from verlvl.engine.loading import load_model, parameters_on_meta, release_dtype
from verlvl.engine.loading import load_sharded as load_sharded_model
from verlvl.engine.lora import adapters_disabled, add_adapters, has_adapters, load_adapter, lora_spec
from verlvl.engine.placement import device_boundary, empty_cache, memory_metrics
from verlvl.engine.state_dict import full_weights
from verlvl.models.processor import load_processor, load_tokenizer, use_chat_template
from verlvl.protocol import DataProto
from verlvl.single_controller import Dispatch, Worker, register
from verlvl.utils.device import current_device
from verlvl.utils.external_lib import import_external_lib
from verlvl.workers.actor import PPOActor, build_optimizer
from verlvl.workers.config import (ActorConfig, CriticConfig, FSDPConfig, ModelConfig, RefConfig,
                                   RolloutConfig, from_mapping)
from verlvl.workers.critic import PPOCritic, ValueModel
from verlvl.workers.rollout import ROLLOUT_ENGINES
from verlvl.workers.rollout.base import never_sampled_ids

log = logging.getLogger(__name__)
ROLES = ("actor", "rollout", "ref", "actor_rollout", "actor_rollout_ref")
# veRL's keys that change nothing here are in config/verl_keys.py (from_mapping skips them; check_config
# refuses their other values).
VERL_MODEL_KEYS = frozenset()


def _dp_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


class ModelWorker(Worker):
    """What both worker classes do with a model: load it sharded, keep it where fsdp_config says."""

    def __init__(self):
        super().__init__()
        self.device = current_device()
        self._offloaded: set[int] = set()
        self.pixel_store = PixelStore()  # a prompt's images are processed once per step on this rank

    def _load(self, build, fsdp_config: FSDPConfig, read_weights=None,
              param_dtype: torch.dtype = torch.bfloat16) -> torch.nn.Module:
        """`build(empty)` -> model; sharded with FSDP2 (when distributed), the weights `read_weights()` gives
        (rank 0 only) broadcast into the shards."""
        on_cuda = self.device.type == "cuda"

        def shard(model):
            # One CPU rank has nothing to shard and FSDP2's hooks cost ~8% of a step there; on CUDA a lone
            # rank keeps FSDP2 for its bf16 mixed precision and offload policies.
            if not dist.is_initialized() or (dist.get_world_size() == 1 and not on_cuda):
                return model
            dtypes = fsdp_config.dtypes()  # None: fp32 compute
            model = apply_fsdp2(model, **fsdp_kwargs(on_cuda, dtypes is not None, fsdp_config.offload_policy,
                                                     *(dtypes or (param_dtype,))))
            install_dummy_vision_pass(model)
            return model

        model = load_sharded_model(build, shard, self.device, on_cuda and fsdp_config.offload_policy, read_weights)
        if on_cuda and fsdp_config.param_offload and not fsdp_config.offload_policy:
            move_model(model, "cpu")
            self._offloaded.add(id(model))
        return model

    @contextlib.contextmanager
    def _resident(self, *models):
        """The models' parameters on the device for the duration (those kept on the host between calls)."""
        moved = [m for m in models if m is not None and id(m) in self._offloaded]
        for model in moved:
            move_model(model, self.device)
        try:
            yield
        finally:
            for model in moved:
                move_model(model, "cpu")
            if moved:
                empty_cache(self.device)


class ActorRolloutRefWorker(ModelWorker):
    """Holds the actor (FSDP2 + AdamW), its rollout engine (hf on the actor's own weights, or vllm fed
    them after each update), and/or the reference model, as `role` says. Config: the actor_rollout_ref
    section (model, actor, rollout, ref)."""

    def __init__(self, config: dict, role: str = "actor_rollout_ref"):
        super().__init__()
        import_external_lib((config.get("model") or {}).get("external_lib"))  # user losses, before any lookup
        if role not in ROLES:
            raise ValueError(f"role {role!r} is not one of {ROLES}")
        self.role = role
        self.has_actor, self.has_rollout = role.startswith("actor"), "rollout" in role
        self.has_ref = role in ("ref", "actor_rollout_ref")
        self.model_config = from_mapping(ModelConfig, config.get("model"), "actor_rollout_ref.model",
                                         keys_under("actor_rollout_ref.model") | VERL_MODEL_KEYS)
        self.actor_config = from_mapping(ActorConfig, config.get("actor"), "actor_rollout_ref.actor")
        self.rollout_config = from_mapping(RolloutConfig, config.get("rollout"), "actor_rollout_ref.rollout")
        self.ref_config = from_mapping(RefConfig, config.get("ref"), "actor_rollout_ref.ref")
        self.build_rollout = ROLLOUT_ENGINES.lookup(self.rollout_config.name)
        self.rollout_config = dataclasses.replace(self.rollout_config, seed=int(config.get("seed", 0)))
        if self.model_config.override_config:  # vLLM builds its model from the same overridden HF config
            engine = dict(self.rollout_config.engine_kwargs or {})
            engine["vllm"] = {"hf_overrides": dict(self.model_config.override_config), **(engine.get("vllm") or {})}
            self.rollout_config = dataclasses.replace(self.rollout_config, engine_kwargs=engine)
        # The rollout mesh: ranks of one tensor-parallel engine get the same prompts; one returns them.
        tp = self.rollout_config.tensor_model_parallel_size if self.rollout_config.name != "hf" else 1
        self._register_dispatch_collect_info("rollout", self.rank // tp, self.rank % tp == 0)
        torch.manual_seed(int(config.get("seed", 0)) + self.rank)  # ranks sample differently

    @register(Dispatch.ONE_TO_ALL)
    def init_model(self) -> None:
        path, mc = self.model_config.path, self.model_config
        self.tokenizer, self.processor = load_tokenizer(path), load_processor(path)
        use_chat_template(self.tokenizer, self.processor, mc.custom_chat_template)
        self.actor = self.rollout = self.ref = self.switch = None
        never_sampled = never_sampled_ids(self.tokenizer)  # the policy gives these probability 0
        released = release_dtype(path) or torch.float32

        def read_weights() -> dict:  # rank 0 only: the checkpoint as released (bf16 for Qwen-VL), once
            return load_model(path, trust_remote_code=mc.trust_remote_code, dtype=released,
                              override_config=mc.override_config).state_dict()

        lora = lora_spec(mc)
        if self.has_actor or self.has_rollout:
            def build_actor(empty: bool):
                model = load_model(path, mc.enable_gradient_checkpointing, mc.trust_remote_code,
                                   mc.attn_implementation, empty=empty, override_config=mc.override_config)
                if lora is not None:
                    with parameters_on_meta() if empty else contextlib.nullcontext():
                        add_adapters(model, lora)
                    if lora.adapter_path and not empty:
                        load_adapter(model, lora.adapter_path)
                if self.actor_config.freeze_vision_tower:
                    log.info("froze %d vision-tower parameters", freeze_vision_tower(model))
                return model

            # with LoRA rank 0 builds the adapted model to read from (fp32; the adapters' first values with it)
            model = self._load(build_actor, self.actor_config.fsdp_config, None if lora else read_weights)
            if lora is not None and self.rank == 0:
                print(f"[verlvl] actor: {model.lora_summary}", flush=True)
            optimizer = scheduler = None
            if self.has_actor:
                optimizer, scheduler = build_optimizer(model, self.actor_config.optim)
            self.actor = PPOActor(model, self.actor_config, self.processor, optimizer, scheduler, _dp_size(),
                                  never_sampled, self.device, self.pixel_store, mc.use_remove_padding)
            if self.has_rollout:  # an engine with its own weights computes in the actor's dtype (rollout.dtype=auto)
                dtype = compute_dtype(self.actor_config.fsdp_config.dtypes(), self.device, dist.is_initialized())
                self.rollout = self.build_rollout(model, path, self.tokenizer, self.processor, self.rollout_config,
                                                  dtype, self.device, pixel_store=self.pixel_store)
                self.switch = self._rollout_switch()
        if self.has_ref and lora is not None and self.actor is not None:
            # LoRA: the reference is the actor's own model with its adapters off (no second copy)
            self.ref = PPOActor(self.actor.model, self.actor_config, self.processor, dp_size=_dp_size(),
                                never_sampled=never_sampled, device=self.device, pixel_store=self.pixel_store,
                                packed=mc.use_remove_padding)
        elif self.has_ref:
            # The reference never steps: on CUDA its weights are bf16 (no fp32 master copy).
            dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32

            def build_ref(empty: bool):
                return load_model(path, trust_remote_code=mc.trust_remote_code,
                                  attn_implementation=mc.attn_implementation, dtype=dtype, empty=empty,
                                  override_config=mc.override_config)

            ref_model = self._load(build_ref, self.ref_config.fsdp_config, read_weights)
            ref_model.requires_grad_(False)
            self.ref = PPOActor(ref_model, self.actor_config, self.processor, dp_size=_dp_size(),
                                never_sampled=never_sampled, device=self.device, pixel_store=self.pixel_store,
                                packed=mc.use_remove_padding)

    def _rollout_switch(self):
        """The rollout/train switch of an engine that holds its own weights (vllm: engine/hybrid.py); None
        for the hf rollout, which generates on the actor's own weights."""
        make = getattr(self.rollout, "switch", None)
        if make is None:
            return None
        actor = self.actor.model

        def sync() -> None:
            with self._resident(actor):
                self.rollout.sync_weights(actor)

        switch = make(sync, empty_cache=lambda: empty_cache(self.device))
        switch.mark_actor_updated()  # the engine has the checkpoint's weights at most: sync before generating
        return switch

    def _generating(self):
        return self.switch.generating() if self.switch is not None else self._resident(self.actor.model)

    @register(mesh_name="rollout")
    @device_boundary
    def generate_sequences(self, prompts: DataProto) -> DataProto:
        with self._generating():
            out = self.rollout.generate_sequences(prompts)
        empty_cache(self.device)
        return out

    @register(Dispatch.ONE_TO_ALL)
    def sync_rollout_weights(self) -> None:
        """The rollout engine takes the actor's current weights before it next generates (inside the
        rollout/train switch, after its weights wake); a no-op for hf, which generates on them."""
        if self.rollout is not None and self.switch is not None:
            self.switch.mark_actor_updated()

    def _log_probs(self, actor: PPOActor, data: DataProto, micro: int, entropy: bool, dynamic: bool | None = None,
                   max_tokens: int | None = None):
        cfg = self.rollout_config
        with self._resident(actor.model):
            return actor.compute_log_prob(data, micro, data.meta_info.get("temperature", cfg.temperature), entropy,
                                          cfg.log_prob_use_dynamic_bsz if dynamic is None else dynamic,
                                          max_tokens or cfg.log_prob_max_token_len_per_gpu)

    @register(Dispatch.DP_COMPUTE_PROTO)
    @device_boundary
    def compute_log_prob(self, data: DataProto) -> DataProto:
        log_probs, entropy = self._log_probs(self.actor, data, self.rollout_config.log_prob_micro_batch_size_per_gpu,
                                             True)
        return DataProto.from_dict({"old_log_probs": log_probs, "entropys": entropy},
                                   meta_info={"metrics": {"perf/log_prob_padding_ratio": self.actor.last_padding_ratio}})

    @register(Dispatch.DP_COMPUTE_PROTO)
    @device_boundary
    def compute_ref_log_prob(self, data: DataProto) -> DataProto:
        ref = self.ref_config
        micro = ref.log_prob_micro_batch_size_per_gpu or self.rollout_config.log_prob_micro_batch_size_per_gpu
        base = adapters_disabled(self.ref.model) if has_adapters(self.ref.model) else contextlib.nullcontext()
        with base:
            log_probs, _ = self._log_probs(self.ref, data, micro, False, ref.log_prob_use_dynamic_bsz,
                                           ref.log_prob_max_token_len_per_gpu)
        return DataProto.from_dict({"ref_log_prob": log_probs})

    @register(Dispatch.DP_COMPUTE_PROTO)
    @device_boundary
    def update_actor(self, data: DataProto) -> DataProto:
        rows = data.meta_info.get("ppo_mini_batch_rows") or (
            self.actor_config.ppo_mini_batch_size * self.rollout_config.n // _dp_size())
        temperature = data.meta_info.get("temperature", self.rollout_config.temperature)
        with self._resident(self.actor.model):
            metrics = self.actor.update_policy(data, max(1, int(rows)), temperature)
        metrics.update(memory_metrics(self.device, "perf/update_actor"))
        return DataProto(meta_info={"metrics": metrics})

    @register(Dispatch.ONE_TO_ALL)
    def save_checkpoint(self, path: str, hf_path: str | None = None) -> None:
        save_sharded(path, self.actor.model, self.actor.optimizer, self.actor.scheduler)
        if hf_path:
            export_hf(hf_path, self.actor.model, self.tokenizer, self.processor)

    @register(Dispatch.ONE_TO_ALL)
    def load_checkpoint(self, path: str) -> None:
        load_sharded(path, self.actor.model, self.actor.optimizer, self.actor.scheduler)
        self.sync_rollout_weights()

    @register(Dispatch.ONE_TO_ALL)
    def get_full_state_dict(self, which: str = "actor") -> dict:
        """Every rank's full copy on the CPU (for tests and tools; checkpoints gather to rank 0 only)."""
        model = (self.actor if which == "actor" else self.ref).model
        return {name: t.cpu().clone() for name, t in full_weights(model, 1 << 30)}


class CriticWorker(ModelWorker):
    """The critic (a value head on the backbone, FSDP2 + AdamW). Config: the critic section."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = from_mapping(CriticConfig, config, "critic")  # rollout_n: set by the trainer, read below
        self.rollout_n = int(config.get("rollout_n", 1))

    @register(Dispatch.ONE_TO_ALL)
    def init_model(self) -> None:
        path = self.config.model.path
        self.processor = load_processor(path)
        gradient_checkpointing = self.config.model.enable_gradient_checkpointing
        released = release_dtype(path) or torch.float32
        lora = lora_spec(self.config.model)

        def build(empty: bool) -> ValueModel:
            model = ValueModel(path, gradient_checkpointing, empty)
            if lora is not None:  # adapters on the backbone; the value head trains whole
                with parameters_on_meta() if empty else contextlib.nullcontext():
                    add_adapters(model.model, lora)
                model.lora_spec = lora
            return model

        model = self._load(build, self.config.fsdp_config,
                           None if lora else lambda: ValueModel(path, dtype=released).state_dict())
        optimizer, scheduler = build_optimizer(model, self.config.optim)
        self.critic = PPOCritic(model, self.config, self.processor, optimizer, scheduler, _dp_size(), self.device,
                                self.pixel_store)

    @register(Dispatch.ONE_TO_ALL)
    def save_checkpoint(self, path: str) -> None:
        save_sharded(path, self.critic.model, self.critic.optimizer, self.critic.scheduler)

    @register(Dispatch.ONE_TO_ALL)
    def load_checkpoint(self, path: str) -> None:
        load_sharded(path, self.critic.model, self.critic.optimizer, self.critic.scheduler)

    @register(Dispatch.ONE_TO_ALL)
    def get_full_state_dict(self) -> dict:
        """Every rank's full copy on the CPU (for tests and tools)."""
        return {name: t.cpu().clone() for name, t in full_weights(self.critic.model, 1 << 30)}

    @register(Dispatch.DP_COMPUTE_PROTO)
    @device_boundary
    def compute_values(self, data: DataProto) -> DataProto:
        with self._resident(self.critic.model):
            return DataProto.from_dict({"values": self.critic.compute_values(data)})

    @register(Dispatch.DP_COMPUTE_PROTO)
    @device_boundary
    def update_critic(self, data: DataProto) -> DataProto:
        rows = data.meta_info.get("ppo_mini_batch_rows") or (
            self.config.ppo_mini_batch_size * self.rollout_n // _dp_size())
        with self._resident(self.critic.model):
            metrics = self.critic.update_critic(data, max(1, int(rows)))
        return DataProto(meta_info={"metrics": metrics})
