"""The hf engine's turns for the agent loop: transformers `generate` on whole conversations (images anywhere in
them), left-padded in micro-batches, with each sampled token's log-prob under the policy's distribution."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from transformers import LogitsProcessorList

from verlvl.engine.fsdp import unsharded
from verlvl.models.vision_inputs import image_inputs
from verlvl.utils.attributes import attribute_set
from verlvl.workers.rollout.agent_loop import TurnOutput, TurnRequest
from verlvl.workers.rollout.hf_rollout import HFRollout, SampledLogProbs, generation_config


class HFTurns:
    def __init__(self, rollout: HFRollout, extra_processors=None):
        self.rollout = rollout
        self.extra_processors = extra_processors  # () -> [LogitsProcessor] after the recorder (tests script turns)

    @contextmanager
    def session(self):
        """The actor's parameters gathered once for a whole agent-loop run: ranks run different numbers of turns,
        so nothing inside may be a collective (an unshard per turn would hang a rank waiting for its peers)."""
        with unsharded(self.rollout.model):
            yield

    @torch.no_grad()
    def generate_turns(self, requests: list[TurnRequest], params: dict) -> list[TurnOutput]:
        """Inside session() (AgentLoopRollout enters it)."""
        r = self.rollout
        micro = r.config.micro_batch_size or len(requests)
        temperature = params["temperature"] if params["do_sample"] else 1.0
        r.model.eval()
        outputs = []
        for start in range(0, len(requests), micro):
            part = requests[start:start + micro]
            config = generation_config(params, max(q.max_new_tokens for q in part), r.eos_ids, r.pad_id, r.suppress)
            with attribute_set(r.model, "generation_config", config):
                outputs.extend(self._generate(part, config, temperature))
        return outputs

    def _generate(self, part: list[TurnRequest], config, temperature: float) -> list[TurnOutput]:
        r = self.rollout
        length = max(len(q.ids) for q in part)
        input_ids = torch.full((len(part), length), r.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(part), length), dtype=torch.long)
        for i, q in enumerate(part):  # left padding: every row's next token is in the last column
            input_ids[i, length - len(q.ids):] = torch.tensor(q.ids, dtype=torch.long)
            attention_mask[i, length - len(q.ids):] = 1
        kwargs = {"input_ids": input_ids.to(r.device), "attention_mask": attention_mask.to(r.device)}
        images = [img for q in part for img in q.images]
        if images:
            pixels = image_inputs(r.processor, images, torch.tensor([g for q in part for g in q.grids]))
            kwargs.update({k: v.to(r.device) for k, v in pixels.items()})
        if r.image_token_id is not None:
            kwargs["mm_token_type_ids"] = (kwargs["input_ids"] == r.image_token_id).int()
        recorder = SampledLogProbs(temperature)
        extra = self.extra_processors() if self.extra_processors is not None else []
        sequences = r.model.generate(**kwargs, generation_config=config,
                                     logits_processor=LogitsProcessorList([recorder, *extra]))
        log_probs, _ = recorder.finish(sequences)
        new = sequences[:, length:].cpu()
        log_probs = log_probs.cpu()
        out = []
        for i, q in enumerate(part):
            ids, lps = new[i, :q.max_new_tokens].tolist(), log_probs[i, :q.max_new_tokens].tolist()
            end = next((k for k, t in enumerate(ids) if t in r.eos_ids), None)
            if end is None:
                out.append(TurnOutput(ids, lps, None))
            else:
                out.append(TurnOutput(ids[:end + 1], lps[:end + 1], ids[end]))
        return out
