"""The worker's vllm path on an emulated GPU with a fake vLLM engine (tests/workers/fake_vllm.py mirrors
vLLM 0.32's signatures and sleep state): three steps of generate -> log-probs -> update -> sync, checking
what the engine was asked in which order, that it sleeps between generations, and the device boundary."""

import torch

from tests.device_check import CudaEmulation, on_cuda
from tests.workers import fake_vllm
from tests.workers.conftest import actor_config

CUDA = torch.device("cuda", 0)
WAKE_WEIGHTS, WAKE_KV = ("wake_up", ("weights",)), ("wake_up", ("kv_cache",))


def test_three_steps_wake_sync_generate_and_sleep_in_order(tiny_vl_path, prompts, monkeypatch):
    import verlvl.workers.fsdp_workers as fsdp_workers
    from verlvl.workers.rollout import vllm_rollout

    fake = fake_vllm.install(monkeypatch, "cuda")
    monkeypatch.setattr(vllm_rollout, "is_cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(fsdp_workers, "current_device", lambda: CUDA)
    config = actor_config(tiny_vl_path, use_kl_loss=False)
    config["rollout"].update(name="vllm", prompt_length=96)
    emu = CudaEmulation()
    with emu:
        worker = fsdp_workers.ActorRolloutRefWorker(config, role="actor_rollout")
        worker.init_model()
        llm = fake.instances[-1]
        assert llm.kwargs["enable_sleep_mode"] is True and llm.calls == [("sleep", 2)]
        for step in range(3):
            start = len(llm.calls)
            data = worker.generate_sequences(prompts)
            assert not any(on_cuda(t) for t in data.batch.values())
            names = [c[0] if c[0] != "wake_up" else c for c in llm.calls[start:]]
            assert names == [WAKE_WEIGHTS, "collective_rpc", "reset_prefix_cache", "reset_encoder_cache",
                             WAKE_KV, "generate", "sleep"], (step, names)
            assert llm.calls[-1] == ("sleep", 2) and llm.sleeping_tags == {"weights", "kv_cache"}
            data.union(worker.compute_log_prob(data).select(batch_keys=["old_log_probs"]))
            data.batch["advantages"] = torch.randn(data.batch["responses"].shape)
            worker.update_actor(data)
            worker.sync_rollout_weights()
        assert [n for n, _ in llm.loaded][:3] == list(worker.actor.model.state_dict())[:3]
