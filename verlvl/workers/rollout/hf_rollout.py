"""The hf rollout: transformers `generate` on the actor's own (unsharded) weights, images and all."""

from __future__ import annotations

import torch

from verlvl.protocol import DataProto
from verlvl.workers.config import RolloutConfig
from verlvl.workers.forward import PixelCache, first_token_column
from verlvl.workers.fsdp_utils import unsharded

# Tokens a policy must never sample: the next forward would count them as image slots and fail
# ("Image features and image tokens do not match"). A random model samples them readily.
VISION_SPECIAL_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>")


def sampling_params(config: RolloutConfig, meta_info: dict) -> dict:
    """n / temperature / top_p / top_k / do_sample: validation uses val_kwargs; meta_info overrides."""
    source = config.val_kwargs if meta_info.get("validate") else config
    params = {k: getattr(source, k) for k in ("n", "temperature", "top_p", "top_k", "do_sample")}
    params.update({k: meta_info[k] for k in params if k in meta_info})
    if params["temperature"] == 0:
        params["do_sample"] = False
    return params


class HFRollout:
    def __init__(self, model, tokenizer, processor, config: RolloutConfig):
        self.model, self.tokenizer, self.processor, self.config = model, tokenizer, processor, config
        generation_config = getattr(model, "generation_config", None)
        eos = getattr(generation_config, "eos_token_id", None) or tokenizer.eos_token_id
        self.eos_ids = sorted(set(eos if isinstance(eos, list) else [eos]))
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        vocab = tokenizer.get_vocab()
        self.suppress = [vocab[t] for t in VISION_SPECIAL_TOKENS if t in vocab]
        self.image_token_id = getattr(processor, "image_token_id", None) if processor is not None else None

    @torch.no_grad()
    def generate_sequences(self, prompts: DataProto) -> DataProto:
        """`n` responses per prompt (rows repeated, interleaved) with responses, masks, position ids over
        prompt+response and the rollout's own log-probs of each sampled token."""
        params = sampling_params(self.config, prompts.meta_info)
        data = prompts.repeat(params["n"], interleave=True) if params["n"] > 1 else prompts
        input_ids, attention_mask = data.batch["input_ids"], data.batch["attention_mask"]
        p, r = input_ids.shape[1], self.config.response_length
        start = first_token_column(attention_mask)  # padding every row shares is not computed
        kwargs = {"input_ids": input_ids[:, start:], "attention_mask": attention_mask[:, start:]}
        kwargs.update(PixelCache(self.processor).rows(data))
        if self.image_token_id is not None:
            kwargs["mm_token_type_ids"] = (kwargs["input_ids"] == self.image_token_id).int()
        gen = dict(max_new_tokens=r, do_sample=params["do_sample"], eos_token_id=self.eos_ids, pad_token_id=self.pad_id,
                   suppress_tokens=self.suppress or None, return_dict_in_generate=True, output_logits=True,
                   use_cache=True)
        if params["do_sample"]:
            gen.update(temperature=params["temperature"], top_p=params["top_p"],
                       top_k=params["top_k"] if params["top_k"] and params["top_k"] > 0 else None)
        self.model.eval()
        with unsharded(self.model):
            out = self.model.generate(**kwargs, **gen)
        responses = out.sequences[:, p - start:]
        logits = torch.stack(out.logits, dim=1).float()
        temperature = params["temperature"] if params["do_sample"] else 1.0
        if temperature != 1.0:
            logits = logits / temperature
        log_probs = logits.gather(-1, responses.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
        responses, response_mask, log_probs = self._pad_after_eos(responses, log_probs, r)

        position_ids = data.batch["position_ids"]
        delta = torch.arange(1, r + 1, dtype=position_ids.dtype)
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
        result = DataProto.from_dict(batch, dict(data.non_tensor_batch), dict(data.meta_info))
        return result

    def _pad_after_eos(self, responses: torch.Tensor, log_probs: torch.Tensor, r: int):
        """Mask = 1 up to and including the first EOS; pad everything after it and up to length r."""
        b, t = responses.shape
        is_eos = torch.isin(responses, torch.tensor(self.eos_ids))
        after_eos = (is_eos.long().cumsum(-1) - is_eos.long()) > 0
        mask = (~after_eos).long()
        responses = responses.masked_fill(after_eos, self.pad_id)
        log_probs = log_probs.masked_fill(after_eos, 0.0)
        if t < r:
            responses = torch.cat([responses, torch.full((b, r - t), self.pad_id, dtype=responses.dtype)], dim=1)
            log_probs = torch.cat([log_probs, torch.zeros(b, r - t)], dim=1)
            mask = torch.cat([mask, torch.zeros(b, r - t, dtype=mask.dtype)], dim=1)
        return responses, mask, log_probs
