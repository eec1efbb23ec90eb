"""The CUDA-only branches on a real GPU (skipped without one; `bash scripts/gpu_check.sh` runs them):
the device boundary, mixed process groups, offload, bf16 compute, packing with flash-attention."""

import os

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(scope="module")
def one_rank_group():
    import torch.distributed as dist

    from verlvl.utils.device import get_dist_backend

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29531")
    torch.cuda.set_device(0)
    dist.init_process_group(get_dist_backend(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_one_group_reduces_host_and_device_tensors(one_rank_group):
    import torch.distributed as dist

    host, device = torch.ones(3), torch.ones(3, device="cuda")
    dist.all_reduce(host)
    dist.all_reduce(device)
    assert host.device.type == "cpu" and device.device.type == "cuda"


def test_actor_on_cuda_matches_the_cpu_in_fp32(tiny_vl, tiny_vl_path, mixed_prompts):
    from verlvl.engine.loading import load_model
    from verlvl.engine.placement import to_device
    from verlvl.workers.actor import PPOActor
    from verlvl.workers.config import ActorConfig, RolloutConfig
    from verlvl.workers.rollout.hf_rollout import HFRollout

    processor, _ = tiny_vl
    torch.manual_seed(0)
    data = HFRollout(load_model(str(tiny_vl_path)), processor.tokenizer, processor,
                     RolloutConfig(n=2, response_length=12)).generate_sequences(mixed_prompts)
    expected, _ = PPOActor(load_model(str(tiny_vl_path)), ActorConfig(), processor).compute_log_prob(data, 3)
    model = load_model(str(tiny_vl_path)).cuda()
    got, _ = PPOActor(model, ActorConfig(), processor, device="cuda").compute_log_prob(to_device(data, "cuda"), 3)
    mask = data.batch["response_mask"].bool()
    assert got.device.type == "cuda" and (got.cpu() - expected)[mask].abs().max() < 1e-3
    cuda_rollout = HFRollout(model, processor.tokenizer, processor, RolloutConfig(n=2, response_length=12),
                             device="cuda").generate_sequences(to_device(mixed_prompts, "cuda"))
    assert cuda_rollout.batch["responses"].device.type == "cuda"


def test_worker_with_offload_trains_on_the_gpu(one_rank_group, tiny_vl_path, mixed_prompts):
    from tests.workers.conftest import actor_config
    from verlvl.workers.fsdp_workers import ActorRolloutRefWorker

    for fsdp in ({"param_offload": True, "optimizer_offload": True}, {"offload_policy": True}):
        config = actor_config(tiny_vl_path, fsdp_config=fsdp)
        worker = ActorRolloutRefWorker(config, role="actor_rollout_ref")
        worker.init_model()
        data = worker.generate_sequences(mixed_prompts)
        data.union(worker.compute_log_prob(data).select(batch_keys=["old_log_probs"]))
        data.union(worker.compute_ref_log_prob(data))
        data.batch["advantages"] = torch.randn(data.batch["responses"].shape)
        metrics = worker.update_actor(data).meta_info["metrics"]
        assert metrics["actor/grad_norm_nonfinite"] == 0.0, fsdp
        assert all(p.device.type == "cpu" for p in worker.actor.model.parameters()), fsdp  # on the host between calls


@pytest.mark.skipif(not __import__("importlib").util.find_spec("flash_attn"), reason="needs flash-attn")
def test_packed_forward_with_flash_attention_matches_padded_sdpa(tiny_vl, tiny_vl_path, mixed_prompts):
    from verlvl.engine.forward import PixelCache, response_log_probs
    from verlvl.engine.loading import load_model
    from verlvl.engine.placement import to_device
    from verlvl.workers.config import RolloutConfig
    from verlvl.workers.rollout.hf_rollout import HFRollout

    processor, _ = tiny_vl
    data = HFRollout(load_model(str(tiny_vl_path)), processor.tokenizer, processor,
                     RolloutConfig(n=2, response_length=12)).generate_sequences(mixed_prompts)
    data = to_device(data, "cuda")
    sdpa = load_model(str(tiny_vl_path), dtype=torch.bfloat16).cuda()
    flash = load_model(str(tiny_vl_path), dtype=torch.bfloat16, attn_implementation="flash_attention_2").cuda()
    with torch.no_grad():
        padded, _ = response_log_probs(sdpa, data, PixelCache(processor, "cuda"))
        packed, _ = response_log_probs(flash, data, PixelCache(processor, "cuda"), packed=True)
    mask = data.batch["response_mask"].bool()
    assert (padded - packed)[mask].abs().max() < 5e-2  # bf16 kernels differ; a wrong mask differs by far more
