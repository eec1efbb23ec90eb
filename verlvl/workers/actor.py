"""PPOActor: log-probs and the policy update on one (FSDP2-sharded or plain) model, on its device."""

from __future__ import annotations

import math
from collections import defaultdict

import torch
import torch.distributed as dist

from verlvl.algos import LOSS_COUNT_KEYS, agg_loss, call_policy_loss, get_policy_loss_fn, kl_penalty, loss_counts
from verlvl.engine.batching import MicroBatches
from verlvl.engine.forward import PixelCache, PixelStore, batched_log_probs, response_log_probs, response_mask_of
from verlvl.engine.fsdp import clip_grad_norm, is_finite, move_optimizer_state
from verlvl.protocol import DataProto
from verlvl.workers.config import ActorConfig, OptimConfig


def build_optimizer(model, optim: OptimConfig):
    """AdamW over trainable parameters, with linear warmup then constant or cosine decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay)
    total = max(1, optim.total_training_steps)
    warmup = optim.lr_warmup_steps if optim.lr_warmup_steps >= 0 else int(optim.lr_warmup_steps_ratio * total)

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        if optim.schedule == "cosine":
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return optim.min_lr_ratio + (1 - optim.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def dp_all_reduce(values: torch.Tensor, op=None) -> torch.Tensor:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(values, op=op or dist.ReduceOp.SUM)
    return values


def global_counts(mini: DataProto, dp_size: int) -> dict:
    """agg_loss's keyword arguments: the mini-batch's response tokens, non-empty rows and rows summed over all
    ranks, and the horizon of seq-mean-token-sum-norm (the untrimmed response width, as veRL's default)."""
    counts = dp_all_reduce(loss_counts(response_mask_of(mini)))
    return {**dict(zip(LOSS_COUNT_KEYS, counts.tolist())), "dp_size": dp_size,
            "loss_scale_factor": mini.batch["responses"].shape[-1]}


def step_if_finite(model, optimizer, max_norm: float, optimizer_offload: bool = False) -> float:
    """Clip, then step; a NaN/inf gradient would poison the weights, so that step is skipped. Returns
    the gradient norm (callers report non-finite ones). With `optimizer_offload`, Adam's moments come to
    the parameters' device for the step and go back to the host after it."""
    grad_norm = clip_grad_norm([p for p in model.parameters() if p.grad is not None], max_norm)
    if is_finite(grad_norm):
        if optimizer_offload:
            move_optimizer_state(optimizer, next(model.parameters()).device)
        optimizer.step()
        if optimizer_offload:
            move_optimizer_state(optimizer, "cpu")
    else:
        optimizer.zero_grad(set_to_none=True)
    return float(grad_norm)


def mean_over_ranks(totals: dict[str, float], dp_size: int) -> dict[str, float]:
    keys = sorted(totals)
    reduced = dp_all_reduce(torch.tensor([totals[k] for k in keys], dtype=torch.float64)) / dp_size
    return dict(zip(keys, reduced.tolist()))


class PPOActor:
    def __init__(self, model, config: ActorConfig, processor=None, optimizer=None, scheduler=None,
                 dp_size: int = 1, never_sampled: tuple[int, ...] = (), device: torch.device | str = "cpu",
                 pixel_store: PixelStore | None = None, packed: bool = False):
        self.model, self.config, self.processor = model, config, processor
        self.never_sampled = never_sampled  # token ids no rollout samples: the policy gives them probability 0
        self.optimizer, self.scheduler, self.dp_size = optimizer, scheduler, dp_size
        self.device, self.pixel_store = torch.device(device), pixel_store
        self.packed = packed  # model.use_remove_padding: padding-free forwards (engine/forward.py packed_inputs)
        self.policy_loss = get_policy_loss_fn(config.policy_loss.loss_mode)
        self.last_padding_ratio = 1.0

    @torch.no_grad()
    def compute_log_prob(self, data: DataProto, micro_size: int, temperature: float = 1.0,
                         calculate_entropy: bool = False, use_dynamic_bsz: bool = False,
                         max_token_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        self.model.eval()
        log_probs, entropy, self.last_padding_ratio = batched_log_probs(
            self.model, data, PixelCache(self.processor, self.device, self.pixel_store), micro_size, temperature, calculate_entropy,
            self.never_sampled, use_dynamic_bsz, max_token_len, self.packed)
        return log_probs, entropy

    def update_policy(self, data: DataProto, mini_batch_rows: int, temperature: float = 1.0) -> dict[str, float]:
        """ppo_epochs passes over mini-batches of `mini_batch_rows` rows (this rank's share); one
        optimizer step per mini-batch. Returns metrics averaged over mini-batches and ranks."""
        cfg = self.config
        self.model.train()
        pixels = PixelCache(self.processor, self.device, self.pixel_store)
        metrics: dict[str, list[float]] = defaultdict(list)
        generator = torch.Generator().manual_seed(0)
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(len(data), generator=generator) if cfg.shuffle else torch.arange(len(data))
            for start in range(0, len(data), mini_batch_rows):
                mini = data[order[start:start + mini_batch_rows]]
                for k, v in self._mini_batch_step(mini, pixels, temperature).items():
                    metrics[k].append(v)
        if self.scheduler is not None:
            self.scheduler.step()
        out = {k: sum(v) / len(v) for k, v in metrics.items()}
        out["actor/lr"] = self.optimizer.param_groups[0]["lr"]
        return out

    def _mini_batch_step(self, mini: DataProto, pixels: PixelCache, temperature: float) -> dict[str, float]:
        cfg = self.config
        agg = global_counts(mini, self.dp_size)
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, float] = defaultdict(float)
        parts = MicroBatches(mini, cfg.ppo_micro_batch_size_per_gpu, cfg.use_dynamic_bsz,
                             cfg.ppo_max_token_len_per_gpu, self.packed)
        for mb in parts:
            mask = response_mask_of(mb).float()
            share = mask.sum().item() / max(1.0, agg["global_tokens"]) * self.dp_size  # token-weighted means
            log_prob, entropy = response_log_probs(self.model, mb, pixels, temperature,
                                                   cfg.entropy_coeff != 0, self.never_sampled, self.packed)
            optional = {k: mb.batch[k] for k in ("rollout_log_probs", "rollout_is_weights") if k in mb.batch.keys()}
            pg_loss, clipfrac, ppo_kl, clipfrac_lower, loss_metrics = call_policy_loss(  # either signature
                self.policy_loss, mb.batch["old_log_probs"], log_prob, mb.batch["advantages"], mask,
                cfg.loss_agg_mode, cfg, **optional, **agg)
            loss = pg_loss
            if cfg.entropy_coeff != 0:
                entropy_term = agg_loss(entropy, mask, cfg.loss_agg_mode, **agg)
                loss = loss - cfg.entropy_coeff * entropy_term
                totals["actor/entropy"] += entropy_term.item()
            if cfg.use_kl_loss:
                kld = kl_penalty(log_prob, mb.batch["ref_log_prob"], cfg.kl_loss_type)
                kl_loss = agg_loss(kld, mask, cfg.loss_agg_mode, **agg)
                loss = loss + cfg.kl_loss_coef * kl_loss
                totals["actor/kl_loss"] += kl_loss.item()
            loss.backward()
            totals["actor/pg_loss"] += pg_loss.item()
            totals["actor/pg_clipfrac"] += clipfrac.item() * share
            totals["actor/ppo_kl"] += ppo_kl.item() * share
            totals["actor/pg_clipfrac_lower"] += clipfrac_lower.item() * share
            for key, value in loss_metrics.items():  # a veRL-signature loss's own metrics
                totals[key] += value * share
        totals["perf/padding_ratio"] = parts.padding_ratio()
        grad_norm = step_if_finite(self.model, self.optimizer, cfg.grad_clip, cfg.fsdp_config.optimizer_offload)
        out = mean_over_ranks(totals, self.dp_size)
        out["actor/grad_norm"] = grad_norm
        out["actor/grad_norm_nonfinite"] = float(not math.isfinite(grad_norm))
        if cfg.use_kl_loss:
            out["actor/kl_coef"] = cfg.kl_loss_coef
        return out
