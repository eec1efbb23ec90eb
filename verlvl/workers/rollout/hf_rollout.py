"""The hf rollout: transformers `generate` on the actor's own (unsharded) weights, images and all, in
micro-batches. No per-step logits are kept: a logits processor takes each sampled token's log-prob (and
the entropy) under the policy's distribution as generation goes, one step's scores at a time."""

from __future__ import annotations

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from verlvl.engine.forward import PixelCache, PixelStore, first_token_column
from verlvl.engine.fsdp import unsharded
from verlvl.protocol import DataProto
from verlvl.utils.attributes import attribute_set
from verlvl.workers.config import RolloutConfig
from verlvl.workers.rollout.base import (build_rollout_batch, eos_ids_of, never_sampled_ids, pad_id_of,
                                         sampling_params)
from verlvl.workers.rollout.token_guard import check_hf


def generation_config(params: dict, max_new_tokens: int, eos_ids: list[int], pad_id: int,
                      suppress: list[int]) -> GenerationConfig:
    """Sampling from the rollout config alone: every field that shapes the distribution is set, so nothing
    of a checkpoint's generation_config.json (Qwen-VL ships repetition_penalty 1.05, top_k 1) leaks in."""
    sample = bool(params["do_sample"])
    return GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=sample, num_beams=1, use_cache=True,
        temperature=params["temperature"] if sample else 1.0, top_p=params["top_p"] if sample else 1.0,
        top_k=(params["top_k"] or 0) if sample else 0, min_p=None, typical_p=1.0, repetition_penalty=1.0,
        no_repeat_ngram_size=0, length_penalty=1.0, min_new_tokens=0, bad_words_ids=None,
        eos_token_id=eos_ids or None, pad_token_id=pad_id, suppress_tokens=suppress or None, begin_suppress_tokens=None,
        forced_bos_token_id=None, forced_eos_token_id=None, return_dict_in_generate=False)


class SampledLogProbs(LogitsProcessor):
    """Records, step by step, the log-prob and entropy of the sampled token under softmax(logits / T) with
    the never-sampled tokens removed: the policy's distribution, as the actor computes it. It runs after
    transformers' token suppression and before temperature / top-k / top-p (custom processors are merged
    in there), so `scores` are the model's logits with the suppressed tokens at -inf. A step's token is
    known at the next call (or, for the last one, after generate): only that step's scores are kept."""

    def __init__(self, temperature: float):
        self.temperature = temperature
        self.log_probs, self.entropies = [], []
        self._pending = None  # the previous step's (log_z, scaled scores)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self._take(input_ids[:, -1])
        scaled = scores.float() / self.temperature
        log_z = torch.logsumexp(scaled, dim=-1)
        probs = torch.softmax(scaled, dim=-1)
        self.entropies.append(log_z - (probs * scaled.nan_to_num(neginf=0.0)).sum(-1))
        self._pending = (log_z, scaled)
        return scores

    def _take(self, tokens: torch.Tensor) -> None:
        if self._pending is not None:
            log_z, scaled = self._pending
            self.log_probs.append(scaled.gather(-1, tokens[:, None]).squeeze(-1) - log_z)
            self._pending = None

    def finish(self, sequences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, steps) log-probs and entropies, given generate's output."""
        self._take(sequences[:, -1])
        return torch.stack(self.log_probs, 1), torch.stack(self.entropies, 1)


class HFRollout:
    def __init__(self, model, tokenizer, processor, config: RolloutConfig, device: torch.device | str = "cpu",
                 pixel_store: PixelStore | None = None):
        self.model, self.tokenizer, self.processor, self.config = model, tokenizer, processor, config
        self.device, self.pixel_store = torch.device(device), pixel_store
        self.eos_ids = eos_ids_of(getattr(model, "generation_config", None), tokenizer)
        self.pad_id = pad_id_of(tokenizer, self.eos_ids)
        self.suppress = list(never_sampled_ids(tokenizer))
        self.image_token_id = getattr(processor, "image_token_id", None) if processor is not None else None
        self.merge_size = getattr(getattr(processor, "image_processor", None), "merge_size", 2)

    def sync_weights(self, model) -> None:
        """Nothing to do: generate runs on the actor's own weights."""

    @torch.no_grad()
    def generate_sequences(self, prompts: DataProto) -> DataProto:
        """`n` responses per prompt (rows repeated, interleaved) with responses, masks, position ids over
        prompt+response and the rollout's own log-probs of each sampled token."""
        params = sampling_params(self.config, prompts.meta_info)
        data = prompts.repeat(params["n"], interleave=True) if params["n"] > 1 else prompts
        r = self.config.response_length
        # ignore_eos: no stop token, every response is response_length tokens (EOS included where sampled)
        config = generation_config(params, r, [] if self.config.ignore_eos else self.eos_ids, self.pad_id,
                                   self.suppress)
        pixels = PixelCache(self.processor, self.device, self.pixel_store)
        if prompts.meta_info.get("check_tokens"):  # the image-token guard (token_guard.py), before any compute
            check_hf(self.model, prompts, pixels.rows(prompts), self.image_token_id, self.merge_size)
        micro = self.config.micro_batch_size or len(data)
        self.model.eval()
        temperature = params["temperature"] if params["do_sample"] else 1.0
        # generate() fills what a config leaves unset from model.generation_config: for the duration, ours
        with unsharded(self.model), attribute_set(self.model, "generation_config", config):
            parts = [self._generate(part, config, pixels, r, temperature) for part in data.split(micro)]
        responses = torch.cat([p[0] for p in parts])
        responses, response_mask = (responses, torch.ones_like(responses)) if self.config.ignore_eos else \
            self._pad_after_eos(responses)
        out = build_rollout_batch(data, responses, response_mask,
                                  torch.cat([p[1] for p in parts]).masked_fill(response_mask == 0, 0.0))
        out.batch["rollout_entropys"] = torch.cat([p[2] for p in parts]).masked_fill(response_mask == 0, 0.0)
        return out

    def _generate(self, data: DataProto, config: GenerationConfig, pixels: PixelCache, r: int,
                  temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, r) sampled tokens of one micro-batch (pad_id where generation stopped early), their log-probs
        and the entropy at each step."""
        input_ids, attention_mask = data.batch["input_ids"], data.batch["attention_mask"]
        start = first_token_column(attention_mask)  # padding every row shares is not computed
        kwargs = {"input_ids": input_ids[:, start:], "attention_mask": attention_mask[:, start:]}
        kwargs.update(pixels.rows(data))
        if self.image_token_id is not None:
            kwargs["mm_token_type_ids"] = (kwargs["input_ids"] == self.image_token_id).int()
        recorder = SampledLogProbs(temperature)
        sequences = self.model.generate(**kwargs, generation_config=config,
                                        logits_processor=LogitsProcessorList([recorder]))
        responses = sequences[:, input_ids.shape[1] - start:]
        log_probs, entropies = recorder.finish(sequences)
        pad = r - responses.shape[1]
        if pad > 0:
            responses = torch.nn.functional.pad(responses, (0, pad), value=self.pad_id)
            log_probs, entropies = (torch.nn.functional.pad(t, (0, pad)) for t in (log_probs, entropies))
        return responses, log_probs, entropies

    def _pad_after_eos(self, responses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask = 1 up to and including the first EOS; pad_id everywhere after it."""
        is_eos = torch.isin(responses, torch.tensor(self.eos_ids, device=responses.device))
        after_eos = (is_eos.long().cumsum(-1) - is_eos.long()) > 0
        return responses.masked_fill(after_eos, self.pad_id), (~after_eos).long()
