"""A rollout engine with the agent loop on top (multi_turn.enable): trajectories in the trainer's layout, one sequence
each, with the loss mask on the model's own tokens, tool images in the row's images and 3-D positions over all."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch

from verlvl.models.rope import qwen_vl_position_ids, text_position_ids
from verlvl.protocol import DataProto
from verlvl.tools.config import load_tools
from verlvl.tools.interaction import load_interactions
from verlvl.workers.config import RolloutConfig
from verlvl.workers.rollout.agent_loop import AgentLoop, Trajectory, cache_key, stack_grids
from verlvl.workers.rollout.base import sampling_params
from verlvl.workers.rollout.token_guard import row_name


class AgentLoopRollout:
    """Wraps an engine (`engine`: its sync_weights) and its turn generator (`turns`: generate_turns)."""

    def __init__(self, engine, turns, tokenizer, processor, config: RolloutConfig, pad_id: int, tools=None,
                 interactions=None):
        if config.ignore_eos:
            raise ValueError("actor_rollout_ref.rollout.ignore_eos=true cannot end a turn; turn it off with "
                             "multi_turn.enable")
        mt = config.multi_turn
        tools = tools if tools is not None else (load_tools(mt.tool_config_path) if mt.tool_config_path else [])
        self.engine, self.config, self.pad_id = engine, config, pad_id
        self.tokenizer, self.processor = tokenizer, processor
        if interactions is None:
            interactions = load_interactions(mt.interaction_config_path) if mt.interaction_config_path else {}
        self.loop = AgentLoop(turns, tokenizer, processor, mt, config.response_length, tools,
                              interactions=interactions)
        self.image_token_id = self.loop.chat.image_token_id

    def sync_weights(self, model) -> None:
        self.engine.sync_weights(model)

    def __getattr__(self, name):  # the engine's own surface (vllm's switch(), ...) stays reachable
        if name == "engine":
            raise AttributeError(name)
        return getattr(self.engine, name)

    def generate_sequences(self, prompts: DataProto) -> DataProto:
        params = sampling_params(self.config, prompts.meta_info)
        data = prompts.repeat(params["n"], interleave=True) if params["n"] > 1 else prompts
        session = getattr(self.loop.engine, "session", None)  # hf: the actor's weights gathered once per call
        with session() if session is not None else nullcontext():
            trajectories = self.loop.run(data, params)
        if self.config.multi_turn.tokenization_sanity_check_mode == "strict" or prompts.meta_info.get("check_tokens"):
            for i, t in enumerate(trajectories):
                self.loop.check(t, row_name(data, i))
        return trajectory_batch(data, trajectories, self.config.response_length, self.pad_id, self.image_token_id,
                                self.loop.merge_size)


def trajectory_batch(data: DataProto, trajectories: list[Trajectory], response_length: int, pad_id: int,
                     image_token_id: int | None, merge_size: int) -> DataProto:
    """The rollout layout (rollout/base.py) for trajectories: response = everything after the prompt, right
    padded; response_mask 1 only on the model's tokens; rollout log-probs 0 elsewhere; position ids over the
    whole row (3-D with images anywhere); the row's images and grids extended by the tools' images."""
    b, r = len(trajectories), response_length
    responses = torch.full((b, r), pad_id, dtype=torch.long)
    response_attention = torch.zeros((b, r), dtype=torch.long)
    response_mask = torch.zeros((b, r), dtype=torch.long)
    log_probs = torch.zeros((b, r), dtype=torch.float32)
    for i, t in enumerate(trajectories):
        ids = t.response_ids
        n = len(ids)
        assert n <= r, f"a trajectory of {n} response tokens exceeds response_length={r}"
        responses[i, :n] = torch.tensor(ids, dtype=torch.long)
        response_attention[i, :n] = 1
        response_mask[i, :n] = torch.tensor(t.response_mask, dtype=torch.long)
        log_probs[i, :n] = torch.tensor(t.log_probs, dtype=torch.float32)
    log_probs = log_probs.masked_fill(response_mask == 0, 0.0)
    input_ids = torch.cat([data.batch["input_ids"], responses], dim=1)
    attention_mask = torch.cat([data.batch["attention_mask"], response_attention], dim=1)
    if data.batch["position_ids"].dim() == 3:
        position_ids = torch.stack([qwen_vl_position_ids(input_ids[i], attention_mask[i], image_token_id,
                                                         stack_grids(t.grids), merge_size)
                                    for i, t in enumerate(trajectories)])
    else:
        position_ids = torch.stack([text_position_ids(attention_mask[i]) for i in range(b)])
    batch = {"prompts": data.batch["input_ids"], "responses": responses, "input_ids": input_ids,
             "attention_mask": attention_mask, "position_ids": position_ids, "response_mask": response_mask,
             "rollout_log_probs": log_probs}
    nt = dict(data.non_tensor_batch)
    uids = nt.get("uid")
    if "multi_modal_data" in nt:
        media, infos = [], []
        for i, t in enumerate(trajectories):
            mm = nt["multi_modal_data"][i]
            key = cache_key(uids[i] if uids is not None else i, t)
            if key is None:
                media.append(mm)
                infos.append(nt["multi_modal_inputs"][i] if "multi_modal_inputs" in nt else {})
            else:
                media.append({**(mm or {}), "image": list(t.images), "cache_key": key})
                infos.append({"image_grid_thw": stack_grids(t.grids)})
        nt["multi_modal_data"] = _objects(media)
        nt["multi_modal_inputs"] = _objects(infos)
    nt["__num_turns__"] = np.array([t.assistant_turns + t.user_turns + 1 for t in trajectories], dtype=np.int64)
    nt["turns"] = _objects([t.messages[t.prompt_messages:] for t in trajectories])
    nt["tool_calls"] = _objects([[c.summary() for c in t.tool_results] for t in trajectories])
    nt["multi_turn_truncated"] = np.array([t.truncated for t in trajectories], dtype=bool)
    nt["turn_scores"] = _objects([list(t.turn_scores) for t in trajectories])
    nt["interaction_turns"] = np.array([t.interaction_turns for t in trajectories], dtype=np.int64)
    nt["tool_rewards"] = _objects([[c.reward for c in t.tool_results if c.reward is not None] for t in trajectories])
    return DataProto.from_dict(batch, nt, dict(data.meta_info))


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out
