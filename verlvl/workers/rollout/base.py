"""What every rollout engine shares: sampling parameters, the tokens no policy may sample, and the
output batch layout (so the trainer never cares which engine ran)."""

from __future__ import annotations

import torch

from verlvl.protocol import DataProto
from verlvl.workers.config import RolloutConfig

# Tokens a policy must never sample: the next forward would count them as image slots and fail
# ("Image features and image tokens do not match"). A random model samples them readily. Every engine
# suppresses them and the actor renormalises without them, so all agree on one distribution.
VISION_SPECIAL_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>")


def never_sampled_ids(tokenizer) -> tuple[int, ...]:
    vocab = tokenizer.get_vocab()
    return tuple(sorted(vocab[t] for t in VISION_SPECIAL_TOKENS if t in vocab))


def eos_ids_of(generation_config, tokenizer) -> list[int]:
    """EOS ids from the generation config (Qwen lists two), else the tokenizer's."""
    eos = getattr(generation_config, "eos_token_id", None) or tokenizer.eos_token_id
    return sorted(set(eos if isinstance(eos, list) else [eos]))


def pad_id_of(tokenizer, eos_ids: list[int]) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]


def sampling_params(config: RolloutConfig, meta_info: dict) -> dict:
    """n / temperature / top_p / top_k / do_sample: validation uses val_kwargs; meta_info overrides.
    top_k is None when off (veRL writes -1 or 0)."""
    source = config.val_kwargs if meta_info.get("validate") else config
    params = {k: getattr(source, k) for k in ("n", "temperature", "top_p", "top_k", "do_sample")}
    params.update({k: meta_info[k] for k in params if k in meta_info})
    if params["temperature"] == 0:
        params["do_sample"] = False
    if not params["top_k"] or params["top_k"] < 0:
        params["top_k"] = None
    return params


def build_rollout_batch(data: DataProto, responses: torch.Tensor, response_mask: torch.Tensor,
                        log_probs: torch.Tensor) -> DataProto:
    """The rollout output every engine returns, for `data` (prompt rows already repeated n times):
    prompts, responses, input_ids / attention_mask / position_ids over prompt+response, the response
    mask and the rollout's own log-probs of the sampled tokens (0 where masked)."""
    input_ids, attention_mask = data.batch["input_ids"], data.batch["attention_mask"]
    position_ids = data.batch["position_ids"]
    r = responses.shape[1]
    delta = torch.arange(1, r + 1, dtype=position_ids.dtype, device=position_ids.device)
    if position_ids.dim() == 3:  # (B, 3, P): text after the prompt advances all three axes together
        response_positions = position_ids[:, :, -1:] + delta.view(1, 1, -1)
    else:
        response_positions = position_ids[:, -1:] + delta.view(1, -1)
    batch = {
        "prompts": input_ids,
        "responses": responses,
        "input_ids": torch.cat([input_ids, responses], dim=1),
        "attention_mask": torch.cat([attention_mask, response_mask], dim=1),
        "position_ids": torch.cat([position_ids, response_positions], dim=-1),
        "response_mask": response_mask,
        "rollout_log_probs": log_probs,
    }
    return DataProto.from_dict(batch, dict(data.non_tensor_batch), dict(data.meta_info))
