"""The hf engine's turns for the agent loop: transformers `generate` on whole conversations (images anywhere in
them), left-padded in micro-batches, with each sampled token's log-prob under the policy's distribution."""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.distributed as dist
from transformers import LogitsProcessorList

from verlvl.engine.fsdp import fsdp_modules, unsharded
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
        """The actor's parameters gathered once for a whole agent-loop run (AgentLoopRollout enters it)."""
        self._dummy = None
        with unsharded(self.rollout.model):
            yield

    def lockstep(self) -> bool:
        """Whether FSDP ranks must run the same generate calls: the sharded model's forward still gathers (its
        root), so a rank whose trajectories are done keeps generating dummy turns while a peer has turns left."""
        return dist.is_initialized() and dist.get_world_size() > 1 and bool(fsdp_modules(self.rollout.model))

    def any_active(self, active: bool) -> bool:
        """Whether any rank still has trajectories to continue (every rank calls this once per round)."""
        if not self.lockstep():
            return active
        flag = torch.tensor([int(active)])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    @torch.no_grad()
    def generate_turns(self, requests: list[TurnRequest], params: dict) -> list[TurnOutput]:
        """Inside session(). In lockstep, every rank makes as many generate calls as the busiest one (dummy
        one-token turns of its first request where it has fewer)."""
        r = self.rollout
        micro = r.config.micro_batch_size or max(len(requests), 1)
        if requests and self._dummy is None:
            first = requests[0]
            self._dummy = TurnRequest(first.ids, first.images, first.grids, 1)
        parts = [requests[s:s + micro] for s in range(0, len(requests), micro)]
        if self.lockstep():
            calls = torch.tensor([len(parts)])
            dist.all_reduce(calls, op=dist.ReduceOp.MAX)
            parts += [[self._dummy]] * (int(calls.item()) - len(parts))
        temperature = params["temperature"] if params["do_sample"] else 1.0
        r.model.eval()
        outputs = []
        for part in parts:
            config = generation_config(params, max(q.max_new_tokens for q in part), r.eos_ids, r.pad_id, r.suppress)
            with attribute_set(r.model, "generation_config", config):
                outputs.extend(self._generate(part, config, temperature))
        return outputs[:len(requests)]  # the dummy turns come last

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
        # an FSDP model: transformers keeps every rank decoding until all are done (synced_gpus), see lockstep()
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
