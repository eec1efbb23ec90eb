"""The agent loop on the hf engine with the real tiny Qwen-VL: tool turns with images fed back, the trainer view of a
trajectory (positions, loss mask, log-probs), the template check, budgets and turn limits."""

import copy

import pytest
import torch

from tests.workers.agent_helpers import ScriptedTurns, shapes_batch
from verlvl.algos.policy_losses import compute_policy_loss_vanilla
from verlvl.engine.forward import PixelCache, response_log_probs
from verlvl.tools.base import BaseTool, ToolResponse
from verlvl.tools.builtin import CalculatorTool, ImageZoomInTool
from verlvl.workers.config import MultiTurnConfig, RolloutConfig
from verlvl.workers.rollout.agent_hf import HFTurns
from verlvl.workers.rollout.agent_rollout import AgentLoopRollout
from verlvl.workers.rollout.chat_turns import TrajectoryMismatch
from verlvl.workers.rollout.hf_rollout import HFRollout

ZOOM = '<tool_call>{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [0, 0, 30, 30]}}</tool_call>'
CALC = '<tool_call>{"name": "calculator", "arguments": {"expression": "3*4"}}</tool_call>'
BAD = '<tool_call>{bad</tool_call>'
SLOW = '<tool_call>{"name": "slow", "arguments": {}}</tool_call>'


class SlowTool(BaseTool):
    async def execute(self, instance_id, parameters, **kwargs):
        import asyncio

        await asyncio.sleep(30)
        return ToolResponse(text="late"), 0.0, {}


def slow_tool():
    return SlowTool({}, {"type": "function", "function": {"name": "slow", "description": "never answers in time",
                                                         "parameters": {"type": "object", "properties": {}}}})


def agent(tiny_vl, scripts, response_length=600, n=1, **multi_turn):
    processor, model = tiny_vl
    config = RolloutConfig(n=n, response_length=response_length,
                           multi_turn=MultiTurnConfig(enable=True, tool_timeout_s=0.2, **multi_turn))
    hf = HFRollout(model, processor.tokenizer, processor, config)
    turns = HFTurns(hf, (lambda: [ScriptedTurns(processor.tokenizer, scripts)]) if scripts is not None else None)
    tools = [ImageZoomInTool({"output_size": 56}), CalculatorTool({}), slow_tool()]
    return AgentLoopRollout(hf, turns, processor.tokenizer, processor, config, hf.pad_id, tools=tools)


@pytest.fixture(scope="module")
def trajectories(tiny_vl, shapes_files):
    processor, _ = tiny_vl
    data = shapes_batch(shapes_files, processor)
    rollout = agent(tiny_vl, ["look " + ZOOM, CALC, BAD, SLOW, "red"])
    return data, rollout, rollout.generate_sequences(data)  # the strict template check runs inside


def test_tool_turns_fed_back_with_images(tiny_vl, trajectories):
    processor, _ = tiny_vl
    tok = processor.tokenizer
    data, _, out = trajectories
    p = data.batch["input_ids"].shape[1]
    assert out.batch["input_ids"].shape == (2, p + 600)
    for i in range(2):
        real = out.batch["attention_mask"][i, p:].bool()
        text = tok.decode(out.batch["responses"][i][real])
        model_text = tok.decode(out.batch["responses"][i][out.batch["response_mask"][i].bool()])
        assert model_text == "look " + ZOOM + "<|im_end|>" + CALC + "<|im_end|>" + BAD + "<|im_end|>" + SLOW + \
            "<|im_end|>red<|im_end|>"
        assert "<|im_start|>tool\n12<|im_end|>" in text
        assert "<|im_start|>tool\nError: the tool call is not valid JSON" in text
        assert "<|im_start|>tool\nError: the tool 'slow' did not answer within 0.2 s<|im_end|>" in text
        assert text.count("<|vision_start|>") == 1  # the zoomed crop, mid-trajectory
        images = out.non_tensor_batch["multi_modal_data"][i]["image"]
        assert len(images) == 2 and images[1].size == (56, 56)
        grids = out.non_tensor_batch["multi_modal_inputs"][i]["image_grid_thw"]
        assert grids.tolist()[1] == [1, 4, 4] and int((out.batch["responses"][i] == 
                                                       processor.image_token_id).sum()) == 4
        calls = out.non_tensor_batch["tool_calls"][i]
        assert [(c["name"], bool(c["error"]), c["num_images"]) for c in calls] == [
            ("image_zoom_in_tool", False, 1), ("calculator", False, 0), ("", True, 0), ("slow", True, 0)]
        assert out.non_tensor_batch["__num_turns__"][i] == 10  # 5 assistant + 4 tool turns + the prompt
    assert not out.non_tensor_batch["multi_turn_truncated"].any()
    # rows of one prompt no longer share images: each has its own pixel-cache key
    keys = {out.non_tensor_batch["multi_modal_data"][i]["cache_key"] for i in range(2)}
    assert len(keys) == 2


def test_trainer_view_positions_and_log_probs(tiny_vl, trajectories):
    processor, model = tiny_vl
    _, _, out = trajectories
    mask = out.batch["response_mask"].bool()
    assert (out.batch["rollout_log_probs"][~mask] == 0).all()
    # 3-D positions over the whole row equal the model's own get_rope_index with the tool image mid-sequence
    pixels = PixelCache(processor).rows(out)
    ids, attention = out.batch["input_ids"], out.batch["attention_mask"]
    engine, _ = model.model.get_rope_index(ids, (ids == processor.image_token_id).int(),
                                           image_grid_thw=pixels["image_grid_thw"], attention_mask=attention)
    for i in range(len(out)):
        real = attention[i].bool()
        assert torch.equal(engine[:, i][:, real], out.batch["position_ids"][i][:, real])
    # the trainer's forward of the whole trajectory gives the log-probs the rollout sampled with
    suppress = tuple(HFRollout(model, processor.tokenizer, processor, RolloutConfig()).suppress)
    with torch.no_grad():
        log_probs, _ = response_log_probs(model, out, PixelCache(processor), never_sampled=suppress)
    assert torch.allclose(log_probs[mask], out.batch["rollout_log_probs"][mask], atol=1e-4)


def test_loss_has_no_gradient_through_tool_tokens(tiny_vl, trajectories):
    processor, model = tiny_vl
    _, _, out = trajectories
    suppress = tuple(HFRollout(model, processor.tokenizer, processor, RolloutConfig()).suppress)
    mask = out.batch["response_mask"]
    tool = out.batch["attention_mask"][:, -mask.shape[1]:].bool() & ~mask.bool()
    assert tool.sum() > 40  # tool turns, template tokens and the crop's image tokens
    log_probs, _ = response_log_probs(model, out, PixelCache(processor), never_sampled=suppress)
    log_probs.retain_grad()
    advantages = torch.randn(mask.shape[0], 1).expand_as(mask)
    # old log-probs as the on-policy shortcut takes them: the rollout's, 0 off the model's tokens
    loss, *_ = compute_policy_loss_vanilla(out.batch["rollout_log_probs"], log_probs, advantages, mask)
    loss.backward()
    assert torch.isfinite(loss)
    assert (log_probs.grad[tool] == 0).all() and (log_probs.grad[mask.bool()] != 0).all()
    model.zero_grad(set_to_none=True)


def test_check_catches_a_trajectory_that_is_not_the_render(tiny_vl, trajectories, shapes_files):
    processor, _ = tiny_vl
    _, rollout, _ = trajectories
    data = shapes_batch(shapes_files, processor, rows=1)
    trajectory = rollout.loop.run(data, {"n": 1, "temperature": 1.0, "top_p": 1.0, "top_k": None,
                                         "do_sample": True})[0]
    rollout.loop.check(trajectory, "row 0")
    tool_turn = trajectory.segments[2]
    for corrupt in ("drop an image token", "another newline", "rename the role"):
        broken = copy.deepcopy(trajectory)
        ids = broken.segments[2].ids
        if corrupt == "drop an image token":
            ids.remove(processor.image_token_id)
        elif corrupt == "another newline":
            ids.insert(0, processor.tokenizer.encode("\n")[0])
        else:
            broken.messages[3]["role"] = "user"
        with pytest.raises(TrajectoryMismatch, match="row 0"):
            rollout.loop.check(broken, "row 0")
    assert not tool_turn.model


def test_budget_ends_and_marks_a_trajectory(tiny_vl, shapes_files):
    processor, _ = tiny_vl
    data = shapes_batch(shapes_files, processor, rows=1)
    tok = processor.tokenizer
    answer = len(tok.encode("\n<|im_start|>tool\n12<|im_end|>\n<|im_start|>assistant\n"))
    # room for the first turn, the calculator's answer and the second call, not for the zoomed image
    budget = len(tok.encode(CALC)) + 1 + answer + len(tok.encode(ZOOM)) + 1 + 5
    out = agent(tiny_vl, [CALC, ZOOM, "red"], response_length=budget).generate_sequences(data)
    assert out.non_tensor_batch["multi_turn_truncated"].tolist() == [True]
    assert [c["name"] for c in out.non_tensor_batch["tool_calls"][0]] == ["calculator", "image_zoom_in_tool"]
    text = processor.tokenizer.decode(out.batch["responses"][0][out.batch["attention_mask"][0, -out.batch[
        "responses"].shape[1]:].bool()])
    assert text.endswith(ZOOM + "<|im_end|>") and "<|vision_start|>" not in text  # ended after the model's turn
    # a turn that runs out of budget mid-way is truncated too
    short = agent(tiny_vl, [CALC], response_length=5).generate_sequences(data)
    assert short.non_tensor_batch["multi_turn_truncated"].tolist() == [True]
    assert short.batch["response_mask"].sum() == 5


def test_turn_limits(tiny_vl, shapes_files):
    processor, _ = tiny_vl
    data = shapes_batch(shapes_files, processor, rows=1)
    out = agent(tiny_vl, [CALC, CALC, CALC, "red"], max_assistant_turns=2).generate_sequences(data)
    assert out.non_tensor_batch["__num_turns__"].tolist() == [4]  # 2 assistant turns, 1 tool turn, the prompt
    out = agent(tiny_vl, [CALC, CALC, CALC, "red"], max_user_turns=1).generate_sequences(data)
    assert out.non_tensor_batch["__num_turns__"].tolist() == [4]
    assert not out.non_tensor_batch["multi_turn_truncated"].any()


def test_sampled_turns_without_scripts(tiny_vl, shapes_files):
    """The random tiny model samples freely (n=2): every trajectory still equals the template's render."""
    processor, _ = tiny_vl
    data = shapes_batch(shapes_files, processor, rows=2)
    out = agent(tiny_vl, None, response_length=48, n=2).generate_sequences(data)
    assert len(out) == 4 and (out.batch["response_mask"].sum(-1) > 0).all()


def test_rewards_and_metrics_see_the_trajectory(tiny_vl, trajectories, tmp_path):
    from verlvl.reward.function import RewardFunctionSpec
    from verlvl.reward.managers import NaiveRewardManager
    from verlvl.trainer.multi_turn_metrics import compute_multi_turn_metrics

    processor, _ = tiny_vl
    _, _, out = trajectories
    reward_file = tmp_path / "reward.py"
    reward_file.write_text(
        "def compute_score(data_source, solution_str, ground_truth, extra_info=None, num_turns=None, turns=None,\n"
        "                  tool_calls=None):\n"
        "    errors = sum(1 for c in tool_calls if c['error'])\n"
        "    final = turns[-1]['content'] if turns[-1]['role'] == 'assistant' else ''\n"
        "    return {'score': float(final == 'red'), 'turns': float(num_turns), 'calls': float(len(tool_calls)),\n"
        "            'errors': float(errors), 'tool_images': float(sum(c['num_images'] for c in tool_calls))}\n")
    manager = NaiveRewardManager(processor.tokenizer, compute_score=RewardFunctionSpec(path=str(reward_file)),
                                 num_workers=1)
    try:
        result = manager(out, return_dict=True)
    finally:
        manager.close()
    info = result["reward_extra_info"]
    assert info["score"] == [1.0, 1.0] and info["turns"] == [10.0, 10.0] and info["calls"] == [4.0, 4.0]
    assert info["errors"] == [2.0, 2.0] and info["tool_images"] == [1.0, 1.0]
    # the score sits on the model's last token (the final <|im_end|>), past every tool turn
    last = out.batch["attention_mask"][:, -out.batch["responses"].shape[1]:].sum(-1) - 1
    assert (result["reward_tensor"].nonzero()[:, 1] == last).all()
    assert out.batch["response_mask"][0, last[0]] == 1
    metrics = compute_multi_turn_metrics(out)
    assert metrics["num_turns/mean"] == 10 and metrics["multi_turn/tool_calls/mean"] == 4
    assert metrics["multi_turn/tool_errors"] == 4 and metrics["multi_turn/tool_error_ratio"] == 0.5
    assert metrics["multi_turn/tool_call_rate"] == 1.0 and metrics["multi_turn/truncated_ratio"] == 0.0
    assert metrics["multi_turn/tool_latency_s/max"] > 0


def test_sample_dumps_show_the_whole_conversation(tiny_vl, trajectories):
    from verlvl.trainer.dumps import generation_records

    processor, _ = tiny_vl
    _, _, out = trajectories
    (record,) = generation_records(out, processor.tokenizer, [1.0, 1.0], {}, step=1, rows=[0])
    assert record["output"].startswith("look <tool_call>") and "tool\n12" in record["output"]
    assert record["output"].endswith("assistant\nred") and len(record["images"]) == 2
