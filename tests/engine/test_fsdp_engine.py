"""The engine's FSDP2 pieces on 2 ranks over gloo (no Ray): loading by broadcast from rank 0, bucketed gathers
with one collective per bucket, rank-0-only state dicts, and the gradient norm over shards."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from verlvl.engine.fsdp import apply_fsdp2, clip_grad_norm, fsdp_kwargs
from verlvl.engine.loading import load_model, load_sharded
from verlvl.engine.state_dict import full_weight_buckets, rank0_state_dict

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(rank: int, port: int, path: str, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        result = {}
        built = []

        def build(empty: bool):
            built.append(empty)
            return load_model(path, empty=empty)

        model = load_sharded(build, lambda m: apply_fsdp2(m), "cpu")
        result["built_empty"] = built
        reference = load_model(path)
        ids = torch.randint(20, 200, (2, 10), generator=torch.Generator().manual_seed(rank))
        with torch.no_grad():
            got = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
            want = reference(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        result["logits_diff"] = (got - want).abs().max().item()

        calls = []
        real_all_gather = dist.all_gather

        def counting(*args, **kwargs):
            calls.append(1)
            return real_all_gather(*args, **kwargs)

        dist.all_gather = counting
        try:
            buckets = list(full_weight_buckets(model, 64 << 10, torch.bfloat16))
        finally:
            dist.all_gather = real_all_gather
        expected = {k: v.to(torch.bfloat16) for k, v in reference.state_dict().items()}
        gathered = {n: t for b in buckets for n, t in b}
        result["bucket_names_in_order"] = list(gathered) == list(expected)
        result["bucket_diff"] = max((gathered[k].float() - expected[k].float()).abs().max().item() for k in expected)
        result["buckets"], result["all_gathers"] = len(buckets), len(calls)

        state = rank0_state_dict(model, torch.bfloat16, bucket_bytes=1 << 20)
        result["rank0_state"] = None if state is None else sorted(state) == sorted(expected)

        # gradient norm over shards: the same as torch's over the full gradients of one process
        model.zero_grad()
        reference.zero_grad()
        for m in (model, reference):
            m(input_ids=ids.new_tensor([[30, 40, 50, 60]]), labels=ids.new_tensor([[30, 40, 50, 60]])).loss.backward()
        full_norm = torch.nn.utils.clip_grad_norm_([p for p in reference.parameters() if p.grad is not None], 0.1)
        norm = clip_grad_norm([p for p in model.parameters() if p.grad is not None], 0.1)
        result["norm"], result["full_norm"] = norm.item(), full_norm.item()
        grads = {n: p.grad.full_tensor() for n, p in model.named_parameters() if p.grad is not None}
        ref_grads = {n: p.grad for n, p in reference.named_parameters() if p.grad is not None}
        result["clipped_grad_diff"] = max((grads[n] - ref_grads[n]).abs().max().item() for n in ref_grads)
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_rank_results(tiny_vl_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp_engine")
    mp.spawn(_run, args=(_free_port(), str(tiny_vl_path), str(out)), nprocs=2, join=True)
    return [torch.load(out / f"rank{r}.pt") for r in range(2)]


def test_only_rank_zero_reads_the_checkpoint_and_every_shard_gets_its_weights(two_rank_results):
    assert two_rank_results[0]["built_empty"] == [True, False]  # the architecture, then the weights, once
    assert two_rank_results[1]["built_empty"] == [True]  # parameters on the meta device: no weights read
    for r in two_rank_results:
        assert r["logits_diff"] <= 1e-5


def test_weight_buckets_gather_with_one_collective_each(two_rank_results):
    for r in two_rank_results:
        assert r["bucket_names_in_order"] and r["bucket_diff"] == 0.0
        assert r["buckets"] > 3 and r["all_gathers"] <= r["buckets"]


def test_checkpoint_state_dicts_gather_to_rank_zero_only(two_rank_results):
    assert two_rank_results[0]["rank0_state"] is True
    assert two_rank_results[1]["rank0_state"] is None


def test_gradient_norm_over_shards_equals_the_full_norm_and_clips_alike(two_rank_results):
    for r in two_rank_results:
        assert r["norm"] == pytest.approx(r["full_norm"], rel=1e-5)
        assert r["norm"] > 0.1  # so the clipping did scale
        assert r["clipped_grad_diff"] <= 1e-6


def test_offload_switches_reach_the_fsdp_policies():
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy

    assert fsdp_kwargs(on_cuda=False, mixed_precision=True, offload_policy=True) == {}  # CPU: fp32, nothing moves
    kwargs = fsdp_kwargs(on_cuda=True, mixed_precision=True, offload_policy=False)
    assert isinstance(kwargs["mp_policy"], MixedPrecisionPolicy) and "offload_policy" not in kwargs
    assert kwargs["mp_policy"].param_dtype == torch.bfloat16 and kwargs["mp_policy"].reduce_dtype == torch.float32
    kwargs = fsdp_kwargs(on_cuda=True, mixed_precision=False, offload_policy=True)
    assert isinstance(kwargs["offload_policy"], CPUOffloadPolicy) and "mp_policy" not in kwargs


def test_process_groups_carry_host_and_device_tensors_on_cuda():
    from verlvl.utils.device import get_dist_backend

    assert get_dist_backend(cuda=True) == "cpu:gloo,cuda:nccl"
    assert get_dist_backend(cuda=False) == "gloo"


def test_the_compute_dtype_an_engine_with_its_own_weights_is_built_in():
    """rollout.dtype=auto builds vLLM in this dtype: bf16 on sharded CUDA ranks (or the mixed_precision dict's
    param_dtype), fp32 where FSDP2's mixed precision does not apply (CPU, unsharded, mixed_precision=false)."""
    from verlvl.engine.fsdp import compute_dtype
    from verlvl.workers.config import FSDPConfig

    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert compute_dtype(FSDPConfig().dtypes(), cuda, sharded=True) == torch.bfloat16
    half = FSDPConfig(mixed_precision={"param_dtype": "fp16", "reduce_dtype": "fp32"}).dtypes()
    assert compute_dtype(half, cuda, sharded=True) == torch.float16
    assert compute_dtype(FSDPConfig(mixed_precision=False).dtypes(), cuda, sharded=True) == torch.float32
    assert compute_dtype(FSDPConfig().dtypes(), cuda, sharded=False) == torch.float32
    assert compute_dtype(FSDPConfig().dtypes(), cpu, sharded=True) == torch.float32
