"""The critic: a value head on the (vision-)language backbone, its value estimates and its update."""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict

import torch
from torch import nn

from verlvl.algos import clipped_value_loss, masked_mean
from verlvl.engine.batching import pad_responses
from verlvl.engine.forward import (PixelCache, PixelStore, dummy_vision, model_inputs, packed_inputs,
                                   response_mask_of)
from verlvl.engine.fsdp import vision_tower
from verlvl.engine.loading import parameters_on_meta
from verlvl.protocol import DataProto
from verlvl.workers.actor import MicroBatches, global_counts, mean_over_ranks, step_if_finite
from verlvl.workers.config import CriticConfig


class ValueModel(nn.Module):
    """The backbone without its LM head, plus a linear value head (zero-initialised: values start at 0)."""

    def __init__(self, path: str, gradient_checkpointing: bool = False, empty: bool = False,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        if empty:  # parameters on the meta device; the weights come by broadcast (engine/loading.py)
            with parameters_on_meta():
                self.model = AutoModel.from_config(AutoConfig.from_pretrained(path), dtype=dtype)
        else:
            self.model = AutoModel.from_pretrained(path, dtype=dtype)
        if gradient_checkpointing:
            self.model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        config = self.model.config
        hidden = getattr(getattr(config, "text_config", config), "hidden_size")
        with parameters_on_meta() if empty else contextlib.nullcontext():
            self.value_head = nn.Linear(hidden, 1, dtype=dtype)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        self._no_split_modules = list(getattr(self.model, "_no_split_modules", None) or [])

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def forward(self, logits_to_keep: int | torch.Tensor = 0, **kwargs) -> torch.Tensor:
        """Values of the last `logits_to_keep` positions, or of the positions it indexes (a 1-D tensor)."""
        hidden = self.model(**kwargs).last_hidden_state
        if isinstance(logits_to_keep, torch.Tensor):
            hidden = hidden[:, logits_to_keep]
        elif logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        return self.value_head(hidden).squeeze(-1)


class PPOCritic:
    def __init__(self, model: ValueModel, config: CriticConfig, processor=None, optimizer=None, scheduler=None,
                 dp_size: int = 1, device: torch.device | str = "cpu", pixel_store: PixelStore | None = None):
        self.model, self.config, self.processor = model, config, processor
        self.optimizer, self.scheduler, self.dp_size = optimizer, scheduler, dp_size
        self.device, self.pixel_store = torch.device(device), pixel_store
        self.packed = config.model.use_remove_padding

    def _values(self, mb: DataProto, pixels: PixelCache) -> torch.Tensor:
        if self.packed:
            kwargs, keep, response_mask = packed_inputs(mb, pixels)
            with dummy_vision(self.model, vision_tower(self.model) is not None and "pixel_values" not in kwargs):
                values = self.model(logits_to_keep=keep, **kwargs)[0]
            return values.new_zeros(response_mask.shape).masked_scatter(response_mask, values) * response_mask_of(mb)
        r = mb.batch["responses"].shape[-1]
        kwargs, needs_dummy = model_inputs(self.model, mb, pixels)
        with dummy_vision(self.model, needs_dummy):
            values = self.model(logits_to_keep=r + 1, **kwargs)[:, :-1]  # the value of each response state
        return values * response_mask_of(mb)

    @torch.no_grad()
    def compute_values(self, data: DataProto) -> torch.Tensor:
        self.model.eval()
        pixels = PixelCache(self.processor, self.device, self.pixel_store)
        parts = MicroBatches(data, self.config.ppo_micro_batch_size_per_gpu, self.config.use_dynamic_bsz,
                             self.config.ppo_max_token_len_per_gpu, self.packed)
        r = data.batch["responses"].shape[-1]
        return torch.cat([pad_responses(self._values(mb, pixels), r) for mb in parts])[parts.restore()]

    def update_critic(self, data: DataProto, mini_batch_rows: int) -> dict[str, float]:
        cfg = self.config
        self.model.train()
        pixels = PixelCache(self.processor, self.device, self.pixel_store)
        metrics: dict[str, list[float]] = defaultdict(list)
        for _ in range(cfg.ppo_epochs):
            for start in range(0, len(data), mini_batch_rows):
                mini = data[start:start + mini_batch_rows]
                agg = global_counts(mini, self.dp_size)
                self.optimizer.zero_grad(set_to_none=True)
                totals = defaultdict(float)
                parts = MicroBatches(mini, cfg.ppo_micro_batch_size_per_gpu, cfg.use_dynamic_bsz,
                                     cfg.ppo_max_token_len_per_gpu, self.packed)
                for mb in parts:
                    mask = response_mask_of(mb).float()
                    vpreds = self._values(mb, pixels)
                    loss, clipfrac = clipped_value_loss(vpreds, mb.batch["returns"], mb.batch["values"], mask,
                                                        cfg.cliprange_value, cfg.loss_agg_mode, **agg)
                    loss.backward()
                    share = mask.sum().item() / max(1.0, agg["global_tokens"]) * self.dp_size
                    totals["critic/vf_loss"] += loss.item()
                    totals["critic/vf_clipfrac"] += clipfrac.item() * share
                    totals["critic/vpred_mean"] += masked_mean(vpreds.detach(), mask).item() * share
                totals["perf/critic_padding_ratio"] = parts.padding_ratio()
                grad_norm = step_if_finite(self.model, self.optimizer, cfg.grad_clip, cfg.fsdp_config.optimizer_offload)
                for k, v in mean_over_ranks(totals, self.dp_size).items():
                    metrics[k].append(v)
                metrics["critic/grad_norm"].append(grad_norm)
                metrics["critic/grad_norm_nonfinite"].append(float(not math.isfinite(grad_norm)))
        if self.scheduler is not None:
            self.scheduler.step()
        out = {k: sum(v) / len(v) for k, v in metrics.items()}
        out["critic/lr"] = self.optimizer.param_groups[0]["lr"]
        return out
