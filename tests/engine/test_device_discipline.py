"""The GPU path's device discipline, checked on the CPU: actor, hf rollout and worker methods run with the
model on an emulated CUDA device (tests/device_check.py), where any tensor left on the host raises as it
would on a GPU, and give the same numbers as the plain CPU run."""

import pytest
import torch

from tests.device_check import CudaEmulation, HostTensorLeft, on_cuda
from verlvl.engine.loading import load_model
from verlvl.engine.placement import to_device
from verlvl.workers.actor import PPOActor, build_optimizer
from verlvl.workers.config import ActorConfig, OptimConfig, RolloutConfig
from verlvl.workers.rollout.base import never_sampled_ids
from verlvl.workers.rollout.hf_rollout import HFRollout

CUDA = torch.device("cuda", 0)


def test_the_emulation_catches_a_host_tensor_and_allows_what_cuda_allows():
    emu = CudaEmulation()
    layer = torch.nn.Linear(3, 2)
    with emu:
        layer.to("cuda")
        x = torch.randn(4, 3)
        with pytest.raises(HostTensorLeft, match="linear mixes a host tensor"):
            layer(x)
        y = layer(x.to("cuda"))
        assert on_cuda(y) and y.device == CUDA and not on_cuda(y.cpu())
        assert on_cuda(y * torch.tensor(2.0))  # a 0-dim host tensor is a scalar, as on CUDA
        assert on_cuda(y[torch.tensor([0, 2])])  # host indices are fine, as on CUDA
        assert torch.equal(y.cpu(), layer.cpu()(x))  # the numbers are the CPU's


def make_actor(path, processor, emu=None, packed=False, **cfg):
    model = load_model(str(path))
    if emu is not None:
        emu.place_module(model)
    config = ActorConfig(optim=OptimConfig(lr=1e-3), ppo_micro_batch_size_per_gpu=3, use_kl_loss=True,
                         entropy_coeff=0.01, **cfg)
    optimizer, scheduler = build_optimizer(model, config.optim)
    return PPOActor(model, config, processor, optimizer, scheduler,
                    never_sampled=never_sampled_ids(processor.tokenizer), device=CUDA if emu else "cpu", packed=packed)


@pytest.fixture(scope="module")
def rollout_batch(tiny_vl, tiny_vl_path, mixed_prompts):
    processor, _ = tiny_vl
    torch.manual_seed(0)
    model = load_model(str(tiny_vl_path))
    data = HFRollout(model, processor.tokenizer, processor, RolloutConfig(n=2, response_length=12)
                     ).generate_sequences(mixed_prompts)
    data.batch["old_log_probs"] = data.batch["rollout_log_probs"]
    data.batch["ref_log_prob"] = data.batch["rollout_log_probs"] - 0.1
    data.batch["advantages"] = torch.randn(data.batch["responses"].shape, generator=torch.Generator().manual_seed(1))
    return data


@pytest.mark.parametrize("dynamic,packed", [(False, False), (True, False), (True, True)])
def test_actor_log_probs_and_update_on_a_device_equal_the_cpu_run(tiny_vl, tiny_vl_path, rollout_batch, dynamic,
                                                                  packed):
    processor, _ = tiny_vl
    extra = {"use_dynamic_bsz": dynamic, "ppo_max_token_len_per_gpu": 200, "packed": packed}
    cpu = make_actor(tiny_vl_path, processor, **extra)
    expected_lp, expected_ent = cpu.compute_log_prob(rollout_batch, 3, 1.0, True, dynamic, 200)
    expected = cpu.update_policy(rollout_batch, mini_batch_rows=8)

    emu = CudaEmulation()
    actor = make_actor(tiny_vl_path, processor, emu, **extra)
    with emu:
        data = to_device(rollout_batch, "cuda")
        assert all(on_cuda(t) for t in data.batch.values())
        log_probs, entropy = actor.compute_log_prob(data, 3, 1.0, True, dynamic, 200)
        assert on_cuda(log_probs) and on_cuda(entropy)
        metrics = actor.update_policy(data, mini_batch_rows=8)
        assert all(on_cuda(p) for p in actor.model.parameters())
        assert all(on_cuda(v) for s in actor.optimizer.state.values() for k, v in s.items() if k != "step")
    assert torch.allclose(log_probs.cpu(), expected_lp, atol=1e-6)
    assert torch.allclose(entropy.cpu(), expected_ent, atol=1e-6)
    for key in ("actor/pg_loss", "actor/kl_loss", "actor/entropy", "actor/grad_norm", "perf/padding_ratio"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-6), key
    assert metrics["perf/padding_ratio"] >= 1.0


def test_hf_rollout_on_a_device_equals_the_cpu_run(tiny_vl, tiny_vl_path, mixed_prompts):
    processor, _ = tiny_vl
    config = RolloutConfig(n=2, response_length=10, micro_batch_size=3, log_prob_micro_batch_size_per_gpu=2)
    torch.manual_seed(3)
    expected = HFRollout(load_model(str(tiny_vl_path)), processor.tokenizer, processor, config
                         ).generate_sequences(mixed_prompts)
    emu = CudaEmulation()
    model = emu.place_module(load_model(str(tiny_vl_path)))
    rollout = HFRollout(model, processor.tokenizer, processor, config, device="cuda")
    torch.manual_seed(3)
    with emu:
        out = rollout.generate_sequences(to_device(mixed_prompts, "cuda"))
        assert all(on_cuda(t) for t in out.batch.values())
    for key in ("responses", "response_mask", "input_ids", "attention_mask", "position_ids"):
        assert torch.equal(out.batch[key].cpu(), expected.batch[key]), key
    assert torch.allclose(out.batch["rollout_log_probs"].cpu(), expected.batch["rollout_log_probs"], atol=1e-6)


def test_worker_methods_take_batches_to_the_device_and_return_them_on_the_host(tiny_vl_path, rollout_batch,
                                                                               monkeypatch):
    import verlvl.workers.fsdp_workers as fsdp_workers
    from tests.workers.conftest import actor_config

    monkeypatch.setattr(fsdp_workers, "current_device", lambda: CUDA)
    emu = CudaEmulation()
    with emu:
        worker = fsdp_workers.ActorRolloutRefWorker(actor_config(tiny_vl_path), role="actor_rollout_ref")
        worker.init_model()
        assert all(on_cuda(p) for p in worker.actor.model.parameters())
        assert all(on_cuda(p) for p in worker.ref.model.parameters())
        prompts = rollout_batch.select(batch_keys=["input_ids", "attention_mask", "position_ids"],
                                       non_tensor_batch_keys=list(rollout_batch.non_tensor_batch))
        generated = worker.generate_sequences(prompts)
        old = worker.compute_log_prob(rollout_batch)
        ref = worker.compute_ref_log_prob(rollout_batch)
        update = worker.update_actor(rollout_batch)
        for out in (generated, old, ref):
            assert not any(on_cuda(t) for t in out.batch.values())  # what a worker returns is on the host
        assert not any(on_cuda(t) for t in rollout_batch.batch.values())  # the caller's batch was not moved
    assert update.meta_info["metrics"]["actor/grad_norm_nonfinite"] == 0.0
    assert emu.moves_to_cuda > 0 and emu.moves_to_host > 0


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_offloaded_actor_lives_on_the_host_between_calls_and_computes_on_the_device(tiny_vl_path, rollout_batch,
                                                                                   monkeypatch):
    import verlvl.workers.fsdp_workers as fsdp_workers
    from tests.workers.conftest import actor_config

    monkeypatch.setattr(fsdp_workers, "current_device", lambda: CUDA)
    config = actor_config(tiny_vl_path, fsdp_config={"param_offload": True, "optimizer_offload": True})
    seen_on_device = []
    emu = CudaEmulation()
    with emu:
        worker = fsdp_workers.ActorRolloutRefWorker(config, role="actor")
        worker.init_model()
        params = list(worker.actor.model.parameters())
        assert not any(on_cuda(p) for p in params)  # offloaded right after loading
        real_step = worker.actor.optimizer.step

        def step(*args, **kwargs):
            seen_on_device.append(all(on_cuda(p) for p in params) and all(
                on_cuda(v) for s in worker.actor.optimizer.state.values() for k, v in s.items() if k != "step"))
            return real_step(*args, **kwargs)

        worker.actor.optimizer.step = step
        worker.update_actor(rollout_batch)
        worker.update_actor(rollout_batch)  # the second step has Adam's moments to bring over
        assert not any(on_cuda(p) for p in params)
        assert not any(on_cuda(v) for s in worker.actor.optimizer.state.values() for v in s.values())
    assert seen_on_device == [True, True]


def test_a_prompts_images_are_processed_once_per_step_on_a_rank(tiny_vl_path, mixed_prompts, monkeypatch):
    import verlvl.engine.forward as forward
    from tests.workers.conftest import actor_config
    from verlvl.workers.fsdp_workers import ActorRolloutRefWorker

    calls = []
    real = forward.image_inputs
    monkeypatch.setattr(forward, "image_inputs", lambda *a, **k: calls.append(1) or real(*a, **k))
    worker = ActorRolloutRefWorker(actor_config(tiny_vl_path), role="actor_rollout_ref")
    worker.init_model()
    for step in (1, 2):
        prompts = mixed_prompts.select(batch_keys=["input_ids", "attention_mask", "position_ids"],
                                       non_tensor_batch_keys=list(mixed_prompts.non_tensor_batch))
        prompts.non_tensor_batch["uid"] = __import__("numpy").array([f"{step}-{i}" for i in range(4)], dtype=object)
        prompts.meta_info["global_step"] = step
        data = worker.generate_sequences(prompts)
        data.union(worker.compute_log_prob(data).select(batch_keys=["old_log_probs"]))
        data.union(worker.compute_ref_log_prob(data))
        data.batch["advantages"] = torch.ones_like(data.batch["old_log_probs"])
        worker.update_actor(data)
        assert len(calls) == 2 * step  # two image prompts, once each per step (n=2 samples, four calls)


def test_offload_policy_keeps_a_loaded_model_on_the_host_and_the_reference_is_bf16_on_cuda(tiny_vl_path,
                                                                                          monkeypatch):
    """CUDA-only loading branches: FSDP2's CPUOffloadPolicy (keep_on_host) leaves the shards on the host;
    without it the model goes to the device; the reference (it never steps) loads in bf16 on CUDA."""
    import verlvl.workers.fsdp_workers as fsdp_workers
    from tests.workers.conftest import actor_config
    from verlvl.engine.loading import load_sharded

    emu = CudaEmulation()
    with emu:
        build = lambda empty: load_model(str(tiny_vl_path), empty=empty)  # noqa: E731
        on_host = load_sharded(build, lambda m: m, "cuda", keep_on_host=True)
        on_device = load_sharded(build, lambda m: m, "cuda", keep_on_host=False)
        assert not any(on_cuda(p) for p in on_host.parameters())
        assert all(on_cuda(p) for p in on_device.parameters())
        monkeypatch.setattr(fsdp_workers, "current_device", lambda: CUDA)
        worker = fsdp_workers.ActorRolloutRefWorker(actor_config(tiny_vl_path), role="ref")
        worker.init_model()
        assert {p.dtype for p in worker.ref.model.parameters()} == {torch.bfloat16}
        assert all(on_cuda(p) for p in worker.ref.model.parameters())
