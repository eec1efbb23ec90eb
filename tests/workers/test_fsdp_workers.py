"""Actor, rollout, reference and critic on 2 FSDP2 ranks over gloo, driven through the worker group."""

import pytest
import torch

from tests.workers.configs import CRITIC, MODEL
from tests.workers.conftest import actor_config
from verlvl.protocol import DataProto
from verlvl.single_controller import RayClassWithInitArgs, RayResourcePool, RayWorkerGroup
from verlvl.trainer.worker_metrics import reduce_worker_metrics
from verlvl.workers.actor import PPOActor, build_optimizer
from verlvl.workers.config import ActorConfig, from_mapping
from verlvl.engine.loading import load_model
from verlvl.workers.fsdp_workers import ActorRolloutRefWorker, CriticWorker
from verlvl.workers.rollout.base import never_sampled_ids

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def make_group(ray_local, cls, **kwargs):
    pool = RayResourcePool([2], use_gpu=False)
    group = RayWorkerGroup(pool, RayClassWithInitArgs(cls, **kwargs))
    group.init_model()
    return group, pool


def rollout_batch(group, prompts):
    """Generate, then add what update_actor needs: old and ref log-probs, fixed advantages."""
    data = group.generate_sequences(prompts)
    data.union(group.compute_log_prob(data))
    data.union(group.compute_ref_log_prob(data))
    data.batch["advantages"] = torch.randn(data.batch["responses"].shape, generator=torch.Generator().manual_seed(0))
    return data


def test_rollout_log_probs_equal_the_actors_and_one_update_equals_one_process(ray_local, tiny_vl_path, prompts):
    group, pool = make_group(ray_local, ActorRolloutRefWorker, config=actor_config(tiny_vl_path),
                             role="actor_rollout_ref")
    try:
        data = rollout_batch(group, prompts)
        assert len(data) == 8  # 4 prompts x n=2
        mask = data.batch["response_mask"].bool()
        diff = (data.batch["old_log_probs"] - data.batch["rollout_log_probs"])[mask].abs().max()
        assert diff <= 1e-4, diff
        assert (data.batch["old_log_probs"] - data.batch["ref_log_prob"])[mask].abs().max() == 0  # same weights
        # 3-D positions continue after the prompt's last position
        pos, p = data.batch["position_ids"], data.batch["prompts"].shape[1]
        assert torch.equal(pos[:, :, p + 1] - pos[:, :, p - 1], torch.full((8, 3), 2))

        per_rank = group.update_actor(DataProto(data.batch, dict(data.non_tensor_batch),
                                                {"ppo_mini_batch_rows": 4})).meta_info["metrics"]
        assert all(len(values) == 2 for values in per_rank.values())  # one value per rank, as veRL's concat
        metrics = reduce_worker_metrics(per_rank)
        ranks = group.get_full_state_dict()
        assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])  # ranks hold identical weights

        cfg = actor_config(tiny_vl_path)["actor"]
        plain = load_model(str(tiny_vl_path))
        actor_cfg = from_mapping(ActorConfig, cfg, "actor")
        optimizer, scheduler = build_optimizer(plain, actor_cfg.optim)
        processor = _processor(tiny_vl_path)
        reference = PPOActor(plain, actor_cfg, processor, optimizer, scheduler,
                             never_sampled=never_sampled_ids(processor.tokenizer))
        expected = reference.update_policy(data, mini_batch_rows=8)
        state = plain.state_dict()
        worst = max((ranks[0][k] - state[k]).abs().max().item() for k in state)
        assert worst <= 1e-5, worst
        changed = max((ranks[0][k] - load_model(str(tiny_vl_path)).state_dict()[k]).abs().max().item()
                      for k in ["lm_head.weight"])
        assert changed > 1e-4  # the step did move the weights
        for key in ("actor/pg_loss", "actor/kl_loss", "actor/entropy"):
            assert metrics[key] == pytest.approx(expected[key], abs=1e-5), key
    finally:
        group.shutdown()
        pool.release()


def _processor(path):
    from verlvl.models.processor import load_processor

    return load_processor(path)


def test_text_only_rank_beside_image_rank_does_not_hang(ray_local, tiny_vl_path, mixed_prompts):
    group, pool = make_group(ray_local, ActorRolloutRefWorker, config=actor_config(tiny_vl_path),
                             role="actor_rollout_ref")
    try:
        data = rollout_batch(group, mixed_prompts)  # rank 0: two text rows x 2; rank 1: two image rows x 2
        assert [len(m["image"]) for m in data.non_tensor_batch["multi_modal_data"]] == [0, 0, 0, 0, 1, 1, 1, 1]
        per_rank = group.update_actor(DataProto(data.batch, dict(data.non_tensor_batch),
                                                {"ppo_mini_batch_rows": 4})).meta_info["metrics"]
        assert all(len(values) == 2 for values in per_rank.values())  # one value per rank, as veRL's concat
        metrics = reduce_worker_metrics(per_rank)
        assert metrics["actor/grad_norm_nonfinite"] == 0.0
    finally:
        group.shutdown()
        pool.release()


@pytest.mark.parametrize("lora_rank", [0, 8])
def test_critic_learns_a_constant_target(ray_local, tiny_vl_path, prompts, lora_rank):
    config = {**CRITIC, "model": {"path": str(tiny_vl_path), "lora_rank": lora_rank, **MODEL},
              "ppo_micro_batch_size_per_gpu": 2, "cliprange_value": 10.0, "optim": {"lr": 3e-3}}
    group, pool = make_group(ray_local, CriticWorker, config=config)
    try:
        before = group.get_full_state_dict()[0]
        responses = torch.randint(20, 300, (4, 8))  # ordinary text tokens (ids < 14 are special)
        data = DataProto.from_dict({
            "input_ids": torch.cat([prompts.batch["input_ids"], responses], 1),
            "attention_mask": torch.cat([prompts.batch["attention_mask"], torch.ones(4, 8, dtype=torch.long)], 1),
            "position_ids": torch.cat([prompts.batch["position_ids"],
                                       prompts.batch["position_ids"][:, :, -1:] + torch.arange(1, 9)], -1),
            "responses": responses, "response_mask": torch.ones(4, 8, dtype=torch.long),
            "returns": torch.full((4, 8), 0.7)}, dict(prompts.non_tensor_batch))
        first = None
        for _ in range(25):
            data.batch["values"] = group.compute_values(data).batch["values"]
            first = first if first is not None else data.batch["values"].clone()
            group.update_critic(DataProto(data.batch, data.non_tensor_batch, {"ppo_mini_batch_rows": 2}))
        values = group.compute_values(data).batch["values"]
        assert first.abs().max() == 0  # zero-initialised head
        assert (values - 0.7).abs().max() < (0.1 if lora_rank else 0.05), values  # adapters move it slower
        after = group.get_full_state_dict()[0]
        changed = {k for k in before if not torch.equal(before[k], after[k])}
        if lora_rank:  # critic.model.lora_rank: the backbone's adapters and the value head train, nothing else
            assert changed and all(".lora_" in k or k.startswith("value_head.") for k in changed), changed
        else:
            assert any(not k.startswith("value_head.") for k in changed)
    finally:
        group.shutdown()
        pool.release()
