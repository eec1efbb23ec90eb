"""Forward passes shared by actor, reference, critic and the hf rollout: the model's inputs on the model's
device, and log-probs / entropy of the response tokens computed in chunks (no full-vocabulary fp32 copy
of a micro-batch, entropy only when asked for)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from verlvl.engine.batching import MicroBatches, pad_responses
from verlvl.engine.fsdp import vision_tower
from verlvl.engine.logprob import token_log_probs
from verlvl.models.vision_inputs import image_inputs
from verlvl.protocol import DataProto
from verlvl.utils.attributes import attribute_set



class PixelStore:
    """Pixel values of each prompt's images for one training step, keyed by the prompt's uid: the rollout,
    log-prob, values and update calls of a step process a prompt's images once per rank, not once per
    call. A batch without a uid or a step number (validation) gets no shared entries."""

    def __init__(self):
        self.step, self.entries = None, {}

    def entries_for(self, data: DataProto) -> dict | None:
        step = data.meta_info.get("global_step")
        if step is None or "uid" not in data.non_tensor_batch:
            return None
        if step != self.step:
            self.step, self.entries = step, {}
        return self.entries


class PixelCache:
    """Pixel values of each row's images, computed on the host and moved to `device`: rows repeated for n
    samples share their image dict, so a prompt's images are processed once per call, or once per step
    with a PixelStore."""

    def __init__(self, processor, device: torch.device | str = "cpu", store: PixelStore | None = None):
        self.processor, self.device, self.store, self._cache = processor, torch.device(device), store, {}

    def rows(self, data: DataProto) -> dict:
        if self.processor is None or "multi_modal_data" not in data.non_tensor_batch:
            return {}
        pixels, grids = [], []
        infos = data.non_tensor_batch.get("multi_modal_inputs")
        shared = self.store.entries_for(data) if self.store is not None else None
        cache = shared if shared is not None else self._cache
        uids = data.non_tensor_batch["uid"] if shared is not None else None
        for i, mm in enumerate(data.non_tensor_batch["multi_modal_data"]):
            images = (mm or {}).get("image") or []
            if not images:
                continue
            # a multi-turn row with tool images has its own key (rows of one uid then differ in images)
            key = mm.get("cache_key") or (uids[i] if uids is not None else id(mm))
            if key not in cache:
                expected = (infos[i] or {}).get("image_grid_thw") if infos is not None else None
                cache[key] = image_inputs(self.processor, images, expected)
            pixels.append(cache[key]["pixel_values"])
            grids.append(cache[key]["image_grid_thw"])
        if not pixels:
            return {}
        non_blocking = self.device.type == "cuda"
        return {"pixel_values": torch.cat(pixels).to(self.device, non_blocking=non_blocking),
                "image_grid_thw": torch.cat(grids).to(self.device, non_blocking=non_blocking)}


def first_token_column(attention_mask: torch.Tensor) -> int:
    """Index of the first column holding a real token in any row: the columns before it are left
    padding shared by the whole batch and can be dropped from the forward exactly."""
    used = attention_mask.sum(0) > 0
    return int(used.float().argmax()) if used.any() else 0


def model_inputs(model, data: DataProto, pixels: PixelCache) -> tuple[dict, bool]:
    """Keyword arguments for the HF forward (shared left padding cut off), and whether the vision
    tower needs a dummy pass."""
    start = first_token_column(data.batch["attention_mask"])
    position_ids = data.batch["position_ids"][..., start:]
    if position_ids.dim() == 3:  # (B, 3, L) in the batch; HF wants (3, B, L)
        position_ids = position_ids.transpose(0, 1)
    kwargs = {"input_ids": data.batch["input_ids"][:, start:],
              "attention_mask": data.batch["attention_mask"][:, start:], "position_ids": position_ids,
              "use_cache": False}
    kwargs.update(pixels.rows(data))
    needs_dummy = vision_tower(model) is not None and "pixel_values" not in kwargs
    return kwargs, needs_dummy


def packed_inputs(data: DataProto, pixels: "PixelCache") -> tuple[dict, torch.Tensor, torch.Tensor]:
    """The rows' real tokens concatenated into one sequence (padding-free), with position ids that restart
    at every row so the attention stays within each row: transformers builds a block-diagonal mask
    from them (sdpa) or passes them to flash-attention's varlen kernel. Qwen-VL's 3-D rotary ids go
    below the restarting text row, as (4, 1, T). Returns the forward's kwargs, the index of the position
    whose logits predict each response token, and the (B, R) mask of those response tokens."""
    mask = data.batch["attention_mask"].bool()
    r = data.batch["responses"].shape[-1]
    lengths = mask.sum(-1)
    text = torch.cat([torch.arange(int(n), device=mask.device) for n in lengths.tolist()])
    positions = data.batch["position_ids"]
    if positions.dim() == 3:  # (B, 3, L) -> (3, T) for the real tokens, under the restarting text row
        position_ids = torch.cat([text[None], positions.transpose(0, 1)[:, mask]])[:, None, :]
    else:
        position_ids = text[None]
    response_mask = mask[:, -r:]
    starts = torch.cumsum(lengths, 0) - lengths  # offset of each row in the packed sequence
    prompt_lengths = lengths - response_mask.sum(-1)
    columns = torch.arange(r, device=mask.device)
    keep = (starts + prompt_lengths - 1)[:, None] + columns[None, :]  # position predicting response token j
    kwargs = {"input_ids": data.batch["input_ids"][mask][None], "attention_mask": None,
              "position_ids": position_ids, "use_cache": False}
    kwargs.update(pixels.rows(data))
    return kwargs, keep[response_mask], response_mask


def response_log_probs(model, data: DataProto, pixels: PixelCache, temperature: float = 1.0,
                       calculate_entropy: bool = False, never_sampled=(), packed: bool = False
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (and entropy) of the response tokens only: logits are made for the response positions,
    never for the prompt. Tokens in `never_sampled` get probability 0, as they do in every rollout.
    `packed`: one padding-free sequence (packed_inputs); the result has the same (B, R) layout, 0 where
    there is no response token."""
    responses = data.batch["responses"]
    if packed:
        kwargs, keep, response_mask = packed_inputs(data, pixels)
        with dummy_vision(model, vision_tower(model) is not None and "pixel_values" not in kwargs):
            logits = model(**kwargs, logits_to_keep=keep).logits[0]
        log_probs, entropy = token_log_probs(logits, responses[response_mask], temperature, never_sampled,
                                             calculate_entropy)
        return (_unpack(log_probs, response_mask),
                _unpack(entropy, response_mask) if calculate_entropy else None)
    r = responses.shape[-1]
    kwargs, needs_dummy = model_inputs(model, data, pixels)
    with dummy_vision(model, needs_dummy):
        logits = model(**kwargs, logits_to_keep=r + 1).logits[:, :-1]
    return token_log_probs(logits, responses, temperature, never_sampled, calculate_entropy)


def _unpack(values: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Per-token values of the packed response tokens back in the (B, R) layout, zeros elsewhere."""
    out = values.new_zeros(response_mask.shape)
    return out.masked_scatter(response_mask, values)


@torch.no_grad()
def batched_log_probs(model, data: DataProto, pixels: PixelCache, micro_size: int, temperature: float = 1.0,
                      calculate_entropy: bool = False, never_sampled=(), use_dynamic_bsz: bool = False,
                      max_token_len: int | None = None, packed: bool = False
                      ) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """response_log_probs over length-sorted, trimmed (or packed) micro-batches, in the input's row order;
    also the padding ratio (computed tokens / real tokens) of those micro-batches."""
    parts = MicroBatches(data, micro_size, use_dynamic_bsz, max_token_len, packed)
    r = data.batch["responses"].shape[-1]
    outs = [response_log_probs(model, mb, pixels, temperature, calculate_entropy, never_sampled, packed)
            for mb in parts]
    restore = parts.restore()
    log_probs = torch.cat([pad_responses(o[0], r) for o in outs])[restore]
    entropy = torch.cat([pad_responses(o[1], r) for o in outs])[restore] if calculate_entropy else None
    return log_probs, entropy, parts.padding_ratio()


def response_mask_of(data: DataProto) -> torch.Tensor:
    if "response_mask" in data.batch.keys():
        return data.batch["response_mask"]
    r = data.batch["responses"].shape[-1]
    return data.batch["attention_mask"][:, -r:]


def install_dummy_vision_pass(model: nn.Module) -> None:
    """When `model._verlvl_dummy_vision` is set, run the vision tower on a tiny dummy image right after
    the token embedding (where a batch with images runs it) and add 0 x its output, so a rank whose
    micro-batch is text-only does the same FSDP collectives, forward and backward, as its peers."""
    tower = vision_tower(model)
    if tower is None or not dist.is_initialized() or dist.get_world_size() == 1:
        return
    patch_dim = 3 * tower.config.temporal_patch_size * tower.config.patch_size ** 2
    merge = tower.config.spatial_merge_size

    def hook(module, args, output):
        if not getattr(model, "_verlvl_dummy_vision", False):
            return output
        pixels = torch.zeros(merge * merge, patch_dim, dtype=output.dtype, device=output.device)
        grid = torch.tensor([[1, merge, merge]], device=output.device)
        out = tower(pixels, grid_thw=grid)
        features = getattr(out, "pooler_output", None)
        features = features if features is not None else (out[0] if isinstance(out, (tuple, list)) else out)
        return output + 0.0 * features.float().sum()

    model.get_input_embeddings().register_forward_hook(hook)


def dummy_vision(model: nn.Module, active: bool):
    """Context: the dummy vision pass on (`active`) or off for the forwards inside."""
    return attribute_set(model, "_verlvl_dummy_vision", active, False)
