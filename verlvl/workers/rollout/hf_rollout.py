"""The hf rollout: transformers `generate` on the actor's own (unsharded) weights, images and all."""

from __future__ import annotations

import torch

from verlvl.protocol import DataProto
from verlvl.workers.config import RolloutConfig
from verlvl.workers.forward import PixelCache, first_token_column, token_log_probs
from verlvl.workers.fsdp_utils import unsharded
from verlvl.workers.rollout.base import (build_rollout_batch, eos_ids_of, never_sampled_ids, pad_id_of,
                                         sampling_params)


class HFRollout:
    def __init__(self, model, tokenizer, processor, config: RolloutConfig):
        self.model, self.tokenizer, self.processor, self.config = model, tokenizer, processor, config
        self.eos_ids = eos_ids_of(getattr(model, "generation_config", None), tokenizer)
        self.pad_id = pad_id_of(tokenizer, self.eos_ids)
        self.suppress = list(never_sampled_ids(tokenizer))
        self.image_token_id = getattr(processor, "image_token_id", None) if processor is not None else None

    def sync_weights(self, model) -> None:
        """Nothing to do: generate runs on the actor's own weights."""

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
            gen.update(temperature=params["temperature"], top_p=params["top_p"], top_k=params["top_k"])
        self.model.eval()
        with unsharded(self.model):
            out = self.model.generate(**kwargs, **gen)
        responses = out.sequences[:, p - start:]
        temperature = params["temperature"] if params["do_sample"] else 1.0
        log_probs, _ = token_log_probs(torch.stack(out.logits, dim=1), responses, temperature, self.suppress)
        responses, response_mask, log_probs = self._pad_after_eos(responses, log_probs, r)
        return build_rollout_batch(data, responses, response_mask, log_probs)

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
