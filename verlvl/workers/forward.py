"""Forward passes shared by actor, reference and critic: micro-batching and response-only log-probs."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from verlvl.models.vision_inputs import image_inputs
from verlvl.protocol import DataProto
from verlvl.workers.fsdp_utils import dummy_vision, vision_tower


def micro_batches(data: DataProto, micro_size: int, use_dynamic_bsz: bool = False,
                  max_token_len: int | None = None) -> tuple[list[DataProto], list[int]]:
    """Split rows into micro-batches; returns them and the order that restores the input's row order.

    Fixed: `micro_size` rows each. Dynamic: groups of at most `max_token_len` real tokens (padding is
    not counted), balanced greedily; every data-parallel rank uses the same number of groups, so FSDP's
    collectives stay matched."""
    n = len(data)
    if not use_dynamic_bsz:
        return data.split(micro_size), list(range(n))
    lengths = data.batch["attention_mask"].sum(-1).tolist()
    groups_needed = max(1, math.ceil(sum(lengths) / max_token_len))
    k = min(_all_reduce_int(groups_needed, dist.ReduceOp.MAX), _all_reduce_int(n, dist.ReduceOp.MIN))
    bins: list[list[int]] = [[] for _ in range(k)]
    load = [0] * k
    for i in sorted(range(n), key=lambda i: -lengths[i]):  # longest first into the lightest group
        j = min(range(k), key=lambda j: (load[j], len(bins[j])))
        bins[j].append(i)
        load[j] += lengths[i]
    order = [i for b in bins for i in sorted(b)]
    restore = [0] * n
    for position, i in enumerate(order):
        restore[i] = position
    return [data[sorted(b)] for b in bins], restore


def _all_reduce_int(value: int, op) -> int:
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.long)
    dist.all_reduce(t, op=op)
    return int(t.item())


class PixelCache:
    """Pixel values of each row's images, computed once per call: rows repeated for n samples share
    their image dict, so the prompt's images are processed once, not n times."""

    def __init__(self, processor):
        self.processor, self._cache = processor, {}

    def rows(self, data: DataProto) -> dict:
        if self.processor is None or "multi_modal_data" not in data.non_tensor_batch:
            return {}
        pixels, grids = [], []
        infos = data.non_tensor_batch.get("multi_modal_inputs")
        for i, mm in enumerate(data.non_tensor_batch["multi_modal_data"]):
            images = (mm or {}).get("image") or []
            if not images:
                continue
            key = id(mm)
            if key not in self._cache:
                expected = (infos[i] or {}).get("image_grid_thw") if infos is not None else None
                self._cache[key] = image_inputs(self.processor, images, expected)
            pixels.append(self._cache[key]["pixel_values"])
            grids.append(self._cache[key]["image_grid_thw"])
        if not pixels:
            return {}
        return {"pixel_values": torch.cat(pixels), "image_grid_thw": torch.cat(grids)}


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


def mask_never_sampled(logits: torch.Tensor, token_ids) -> torch.Tensor:
    """Logits of tokens no rollout may sample (vision specials) at the lowest finite value: probability
    0, and 0 x logit stays finite in the entropy. Renormalises the policy over the tokens it can sample."""
    if not token_ids:
        return logits
    return logits.index_fill(-1, torch.as_tensor(token_ids, device=logits.device), torch.finfo(logits.dtype).min)


def token_log_probs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0, never_sampled=(),
                    calculate_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs of `tokens` (and the entropy) under softmax(logits / temperature) without the tokens in
    `never_sampled`: the one definition of the policy's probabilities, for the actor and the hf rollout."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    logits = mask_never_sampled(logits, never_sampled)
    log_z = torch.logsumexp(logits, dim=-1)
    log_probs = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - log_z
    entropy = log_z - (torch.softmax(logits, dim=-1) * logits).sum(-1) if calculate_entropy else None
    return log_probs, entropy


def response_log_probs(model, data: DataProto, pixels: PixelCache, temperature: float = 1.0,
                       calculate_entropy: bool = False, never_sampled=()) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (and entropy) of the response tokens only: logits are made for the last R+1 positions,
    never for the prompt. Tokens in `never_sampled` get probability 0, as they do in every rollout."""
    responses = data.batch["responses"]
    r = responses.shape[-1]
    kwargs, needs_dummy = model_inputs(model, data, pixels)
    with dummy_vision(model, needs_dummy):
        logits = model(**kwargs, logits_to_keep=r + 1).logits[:, :-1]
    return token_log_probs(logits, responses, temperature, never_sampled, calculate_entropy)


def response_mask_of(data: DataProto) -> torch.Tensor:
    if "response_mask" in data.batch.keys():
        return data.batch["response_mask"]
    r = data.batch["responses"].shape[-1]
    return data.batch["attention_mask"][:, -r:]
