"""Interactions on the hf agent loop with the real tiny Qwen-VL: an environment (not a tool call) answers each turn,
with text and an image, scores it and ends the episode; veRL's interaction config YAML."""

import textwrap
import typing

from PIL import Image

from tests.workers.agent_helpers import ScriptedTurns, shapes_batch
from verlvl.tools.base import ToolResponse
from verlvl.tools.interaction import BaseInteraction, load_interactions
from verlvl.workers.config import MultiTurnConfig, RolloutConfig
from verlvl.workers.rollout.agent_hf import HFTurns
from verlvl.workers.rollout.agent_rollout import AgentLoopRollout
from verlvl.workers.rollout.hf_rollout import HFRollout


class GuessColour(BaseInteraction):
    """Says "no" with a picture of the right colour until the model names it (then ends the episode, score 1)."""

    finalized: typing.ClassVar[list] = []

    async def start_interaction(self, instance_id=None, **kwargs):
        return f"episode-{kwargs['ground_truth']}"

    async def generate_response(self, instance_id, messages, **kwargs):
        answer = messages[-1]["content"].strip()
        if answer == kwargs["ground_truth"]:
            return True, "Correct.", 1.0, {}
        hint = Image.new("RGB", (56, 56), (220, 40, 40))
        return False, ToolResponse(text=f"No, not {answer}. It looks like this:", image=[hint]), 0.0, {}

    async def finalize_interaction(self, instance_id=None, **kwargs):
        GuessColour.finalized.append(instance_id)


def test_environment_answers_turns_with_images(tiny_vl, shapes_files, tmp_path):
    processor, model = tiny_vl
    tok = processor.tokenizer
    config_file = tmp_path / "interaction.yaml"
    config_file.write_text(textwrap.dedent("""
        interaction:
          - class_name: tests.workers.test_agent_interaction.GuessColour
            config: {}
    """))
    interactions = load_interactions(str(config_file))
    assert list(interactions) == ["guesscolour"]
    data = shapes_batch(shapes_files, processor)
    data.non_tensor_batch["extra_info"] = data.non_tensor_batch["extra_info"].copy()
    data.non_tensor_batch["extra_info"][0] = {**data.non_tensor_batch["extra_info"][0],
                                              "interaction_kwargs": {"name": "guesscolour", "ground_truth": "red"}}
    config = RolloutConfig(response_length=200, multi_turn=MultiTurnConfig(enable=True))
    hf = HFRollout(model, tok, processor, config)
    turns = HFTurns(hf, lambda: [ScriptedTurns(tok, ["blue", "green", "red", "red"])])
    out = AgentLoopRollout(hf, turns, tok, processor, config, hf.pad_id, tools=[],
                           interactions=interactions).generate_sequences(data)  # the strict render check inside
    nt = out.non_tensor_batch
    assert list(nt["turn_scores"][0]) == [0.0, 0.0, 1.0] and nt["interaction_turns"].tolist() == [2, 0]
    assert nt["__num_turns__"].tolist() == [6, 2]  # 3 model turns + 2 environment turns + the prompt; no environment
    text = tok.decode(out.batch["responses"][0][out.batch["attention_mask"][0, -200:].bool()])
    assert text.startswith("blue<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|>")
    assert text.endswith("No, not green. It looks like this:<|im_end|>\n<|im_start|>assistant\nred<|im_end|>")
    assert tok.decode(out.batch["responses"][0][out.batch["response_mask"][0].bool()]) == \
        "blue<|im_end|>green<|im_end|>red<|im_end|>"
    assert len(nt["multi_modal_data"][0]["image"]) == 3 and len(nt["multi_modal_data"][1]["image"]) == 1
    assert GuessColour.finalized == ["episode-red"]
