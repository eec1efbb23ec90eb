"""Rollout-engine plumbing that needs no vLLM: engine arguments, the version check, weight buckets,
suppressed tokens and truncated importance sampling."""

import math

import pytest
import torch

from verlvl.algos.losses import truncated_is_weight
from verlvl.algos.policy_losses import compute_policy_loss_vanilla
from verlvl.workers.config import RolloutConfig, from_mapping
from verlvl.engine.logprob import mask_never_sampled
from verlvl.workers.rollout import ROLLOUT_ENGINES
from verlvl.workers.rollout.vllm_rollout import engine_kwargs
from verlvl.workers.rollout.vllm_version import check_vllm_version
from verlvl.engine.state_dict import full_weight_buckets, full_weights


def test_engine_kwargs_follow_the_config_on_cpu_and_cuda():
    config = from_mapping(RolloutConfig, {"name": "vllm", "prompt_length": 100, "response_length": 28,
                                          "limit_images": 2, "tensor_model_parallel_size": 2,
                                          "engine_kwargs": {"vllm": {"max_num_seqs": 7, "swap_space": 0}}},
                          "actor_rollout_ref.rollout")
    cpu = engine_kwargs(config, "/m", torch.float32, on_cuda=False, world_size=4)
    assert cpu["max_model_len"] == 128 and cpu["dtype"] == "float32" and cpu["tensor_parallel_size"] == 2
    assert cpu["limit_mm_per_prompt"] == {"image": 2}
    assert cpu["distributed_executor_backend"] == "external_launcher" and cpu["data_parallel_size"] == 2
    assert cpu["kv_cache_memory_bytes"] == int(0.25 * (1 << 30)) and "enable_sleep_mode" not in cpu
    assert cpu["max_num_seqs"] == 7 and cpu["swap_space"] == 0  # engine_kwargs.vllm wins
    assert cpu["logprobs_mode"] == "processed_logprobs"
    cuda = engine_kwargs(config, "/m", torch.bfloat16, on_cuda=True, world_size=1)
    assert cuda["dtype"] == "bfloat16" and cuda["enable_sleep_mode"] and cuda["gpu_memory_utilization"] == 0.5
    assert "distributed_executor_backend" not in cuda and "kv_cache_memory_bytes" not in cuda
    with pytest.raises(ValueError, match="tensor_model_parallel_size=2 does not divide the 3 actor workers"):
        engine_kwargs(config, "/m", torch.float32, on_cuda=False, world_size=3)


def test_vllm_version_check_names_what_to_install():
    assert check_vllm_version("0.32.0") == "0.32.0"
    assert check_vllm_version("0.33.1+cu130") == "0.33.1+cu130"
    with pytest.raises(RuntimeError, match=r"vLLM 0.31.2 is installed; the vllm rollout supports vLLM"):
        check_vllm_version("0.31.2")
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"pip install 'verlvl\[vllm\]'"):
            check_vllm_version()


def test_rollout_engines_are_a_registry():
    assert {"hf", "vllm"} <= set(ROLLOUT_ENGINES)
    with pytest.raises(ValueError, match=r"unknown rollout engine 'sglang' \(actor_rollout_ref.rollout.name\)"):
        ROLLOUT_ENGINES.lookup("sglang")


def test_weight_buckets_are_bounded_and_carry_every_tensor_once():
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 8), torch.nn.LayerNorm(8))
    state = model.state_dict()
    bound = 64 * 64 * 2 + 1  # one 64x64 bf16 weight: it fills a bucket of its own
    buckets = list(full_weight_buckets(model, bucket_bytes=bound, dtype=torch.bfloat16))
    names = [n for b in buckets for n, _ in b]
    assert names == list(state)
    assert len(buckets) >= 2 and all(t.dtype == torch.bfloat16 for b in buckets for _, t in b)
    for bucket in buckets:
        assert len(bucket) == 1 or sum(t.numel() * t.element_size() for _, t in bucket) <= bound
    flat = dict(full_weights(model, 1 << 20))
    assert all(torch.equal(flat[k], state[k]) for k in state)


def test_never_sampled_tokens_get_probability_zero_and_entropy_stays_finite():
    logits = torch.randn(2, 3, 10, requires_grad=True)
    masked = mask_never_sampled(logits, (3, 7))
    probs = torch.softmax(masked, -1)
    assert probs[..., [3, 7]].max() == 0 and torch.allclose(probs.sum(-1), torch.ones(2, 3))
    entropy = torch.logsumexp(masked, -1) - (probs * masked).sum(-1)
    assert torch.isfinite(entropy).all()
    entropy.sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[..., [3, 7]].abs().max() == 0


def test_truncated_importance_sampling_weights_the_loss_by_the_capped_ratio():
    old = torch.tensor([[-1.0, -2.0, -0.5]])
    rollout = torch.tensor([[-1.0, -3.0, -0.4]])  # ratios 1, e, e^-0.1
    assert truncated_is_weight(old, rollout, {"tis_imp_ratio_cap": -1}) == 1.0
    weight = truncated_is_weight(old, rollout, {"tis_imp_ratio_cap": 2.0})
    assert torch.allclose(weight, torch.tensor([[1.0, 2.0, math.exp(-0.1)]]))
    adv, mask = torch.ones(1, 3), torch.ones(1, 3)
    plain, *_ = compute_policy_loss_vanilla(old, old, adv, mask, config={})
    tis, *_ = compute_policy_loss_vanilla(old, old, adv, mask, config={"tis_imp_ratio_cap": 2.0},
                                          rollout_log_probs=rollout)
    assert plain.item() == pytest.approx(-1.0)
    assert tis.item() == pytest.approx(-(1.0 + 2.0 + math.exp(-0.1)) / 3)


def test_fsdp2_shards_are_cast_then_gathered_into_full_tensors(tmp_path):
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 4))
        expected = {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}
        fully_shard(model)
        assert all(hasattr(v, "full_tensor") for v in model.state_dict().values())  # DTensor shards
        out = dict(full_weights(model, 1 << 20, torch.bfloat16))
        assert all(type(out[k]) is torch.Tensor and torch.equal(out[k], expected[k]) for k in expected)
    finally:
        dist.destroy_process_group()
