"""The vllm engine's turns for the agent loop: each conversation so far in the engine view (one placeholder per
image, the raw images, tools' crops included), one request per trajectory with its own token budget."""

from __future__ import annotations

import torch

from verlvl.workers.rollout.agent_loop import TurnOutput, TurnRequest
from verlvl.workers.rollout.vllm_rollout import SLEEP_TAGS, VLLMRollout


def engine_ids(ids: list[int], image_token_id: int | None) -> list[int]:
    """Trainer view -> engine view: each run of image tokens becomes one placeholder (vLLM expands it again)."""
    out = []
    for i, token in enumerate(ids):
        if image_token_id is not None and token == image_token_id and i > 0 and ids[i - 1] == image_token_id:
            continue
        out.append(token)
    return out


class VLLMTurns:
    def __init__(self, rollout: VLLMRollout, extra_sampling=None):
        self.rollout = rollout
        self.extra_sampling = extra_sampling  # (TurnRequest) -> SamplingParams kwargs (tests script turns with it)

    @torch.no_grad()
    def generate_turns(self, requests: list[TurnRequest], params: dict) -> list[TurnOutput]:
        from vllm import SamplingParams

        r = self.rollout
        sampling = []
        for q in requests:
            kwargs = {"n": 1, "max_tokens": q.max_new_tokens, "top_p": params["top_p"], "top_k": params["top_k"] or 0,
                      "temperature": params["temperature"] if params["do_sample"] else 0.0, "logprobs": 0,
                      "stop_token_ids": r.eos_ids, "logit_bias": r.logit_bias or None, "detokenize": False}
            kwargs.update(self.extra_sampling(q) if self.extra_sampling is not None else {})
            sampling.append(SamplingParams(**kwargs))
        inputs = []
        for q in requests:
            item = {"prompt_token_ids": engine_ids(q.ids, r.image_token_id)}
            if q.images:
                item["multi_modal_data"] = {"image": list(q.images)}
            inputs.append(item)
        r._require_awake(SLEEP_TAGS, "generate_sequences")
        try:
            outputs = r.engine.generate(inputs, sampling, use_tqdm=False)
        finally:
            r._restore_threads()
        out = []
        for q, request in zip(requests, outputs):
            sample = request.outputs[0]
            ids = list(sample.token_ids)[:q.max_new_tokens]
            log_probs = [lp[t].logprob for t, lp in zip(ids, sample.logprobs)]
            end = next((k for k, t in enumerate(ids) if t in r.eos_ids), None)
            if end is None:
                out.append(TurnOutput(ids, log_probs, None))
            else:
                out.append(TurnOutput(ids[:end + 1], log_probs[:end + 1], ids[end]))
        return out
