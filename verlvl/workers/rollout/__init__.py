"""Rollout engines by actor_rollout_ref.rollout.name: hf (transformers generate on the actor's own
weights) and vllm (an in-process vLLM engine given the actor's weights after each update).

An engine is built by `factory(model, model_path, tokenizer, processor, config, actor_dtype, device,
pixel_store=None)` and has `generate_sequences(prompts) -> DataProto` (layout: rollout/base.py) and
`sync_weights(model)`.
Add one with `@ROLLOUT_ENGINES.register("name")`.
"""

from __future__ import annotations

from verlvl.utils.registry import Registry

ROLLOUT_ENGINES = Registry("rollout engine", "actor_rollout_ref.rollout.name")


@ROLLOUT_ENGINES.register("hf")
def build_hf_rollout(model, model_path, tokenizer, processor, config, actor_dtype, device="cpu", pixel_store=None):
    from verlvl.workers.rollout.hf_rollout import HFRollout

    rollout = HFRollout(model, tokenizer, processor, config, device, pixel_store)
    if config.multi_turn.enable:  # the agent loop on top (workers/rollout/agent_loop.py)
        from verlvl.workers.rollout.agent_hf import HFTurns
        from verlvl.workers.rollout.agent_rollout import AgentLoopRollout

        return AgentLoopRollout(rollout, HFTurns(rollout), tokenizer, processor, config, rollout.pad_id)
    return rollout


@ROLLOUT_ENGINES.register("vllm")
def build_vllm_rollout(model, model_path, tokenizer, processor, config, actor_dtype, device="cpu", pixel_store=None):
    from verlvl.workers.rollout.vllm_rollout import VLLMRollout

    rollout = VLLMRollout(model_path, tokenizer, config, actor_dtype, getattr(model, "generation_config", None))
    if config.multi_turn.enable:  # the agent loop on top (workers/rollout/agent_loop.py)
        from verlvl.workers.rollout.agent_rollout import AgentLoopRollout
        from verlvl.workers.rollout.agent_vllm import VLLMTurns

        return AgentLoopRollout(rollout, VLLMTurns(rollout), tokenizer, processor, config, rollout.pad_id)
    return rollout
