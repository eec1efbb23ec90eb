"""The actor's update in one process: dynamic batching, frozen vision tower, non-finite gradients, hf rollout."""

import pytest
import torch

from verlvl.workers.actor import PPOActor, build_optimizer
from verlvl.workers.config import ActorConfig, OptimConfig, RolloutConfig
from verlvl.engine.fsdp import freeze_vision_tower, vision_tower
from verlvl.engine.loading import load_model
from verlvl.workers.rollout.base import never_sampled_ids
from verlvl.workers.rollout.hf_rollout import HFRollout


@pytest.fixture(scope="module")
def batch(tiny_vl, tiny_vl_path, mixed_prompts):
    """8 generated rows of different lengths (text and image prompts), with old log-probs and advantages."""
    processor, _ = tiny_vl
    torch.manual_seed(0)
    model = load_model(str(tiny_vl_path))
    rollout = HFRollout(model, processor.tokenizer, processor, RolloutConfig(n=2, response_length=12))
    data = rollout.generate_sequences(mixed_prompts)
    data.batch["old_log_probs"] = data.batch["rollout_log_probs"]
    data.batch["advantages"] = torch.randn(data.batch["responses"].shape, generator=torch.Generator().manual_seed(1))
    return data


def make_actor(path, processor, **cfg):
    model = load_model(str(path))
    config = ActorConfig(optim=OptimConfig(lr=1e-3), **cfg)
    if config.freeze_vision_tower:
        freeze_vision_tower(model)
    optimizer, scheduler = build_optimizer(model, config.optim)
    return PPOActor(model, config, processor, optimizer, scheduler,
                    never_sampled=never_sampled_ids(processor.tokenizer))


def test_dynamic_batching_gives_the_loss_of_fixed_micro_batches(tiny_vl, tiny_vl_path, batch):
    processor, _ = tiny_vl
    fixed = make_actor(tiny_vl_path, processor, ppo_micro_batch_size_per_gpu=2, entropy_coeff=0.01)
    dynamic = make_actor(tiny_vl_path, processor, use_dynamic_bsz=True, ppo_max_token_len_per_gpu=150,
                         entropy_coeff=0.01)
    m_fixed = fixed.update_policy(batch, mini_batch_rows=8)
    m_dynamic = dynamic.update_policy(batch, mini_batch_rows=8)
    lengths = batch.batch["attention_mask"].sum(-1)
    assert lengths.min() != lengths.max()  # rows really differ in length, so the groupings differ
    for key in ("actor/pg_loss", "actor/entropy", "actor/grad_norm"):
        assert m_dynamic[key] == pytest.approx(m_fixed[key], abs=1e-5), key
    a, b = fixed.model.state_dict(), dynamic.model.state_dict()
    # Adam's first step is about lr * sign(g): where |g| is near eps, float-level differences between
    # the two groupings (different padding trimmed) move a weight by a few percent of lr (1e-3).
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 5e-5


def test_frozen_vision_tower_does_not_change(tiny_vl, tiny_vl_path, batch):
    processor, _ = tiny_vl
    actor = make_actor(tiny_vl_path, processor, ppo_micro_batch_size_per_gpu=4, freeze_vision_tower=True)
    before = {k: v.clone() for k, v in actor.model.state_dict().items()}
    actor.update_policy(batch, mini_batch_rows=8)
    after = actor.model.state_dict()
    tower = {f"model.visual.{k}" for k in vision_tower(actor.model).state_dict()}
    assert tower and all(torch.equal(before[k], after[k]) for k in tower)
    assert any(not torch.equal(before[k], after[k]) for k in after if k not in tower)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_non_finite_gradient_skips_the_step_and_says_so(tiny_vl, tiny_vl_path, batch):
    processor, _ = tiny_vl
    actor = make_actor(tiny_vl_path, processor, ppo_micro_batch_size_per_gpu=4)
    before = {k: v.clone() for k, v in actor.model.state_dict().items()}
    poisoned = batch.select(deepcopy=True)
    poisoned.batch["advantages"][0, 0] = float("nan")
    metrics = actor.update_policy(poisoned, mini_batch_rows=8)
    assert metrics["actor/grad_norm_nonfinite"] == 1.0
    assert all(torch.equal(before[k], v) for k, v in actor.model.state_dict().items())


def test_hf_rollout_masks_after_eos_and_never_samples_vision_tokens(tiny_vl, tiny_vl_path, prompts):
    processor, _ = tiny_vl
    model = load_model(str(tiny_vl_path))
    rollout = HFRollout(model, processor.tokenizer, processor, RolloutConfig(n=4, response_length=16))
    torch.manual_seed(0)
    out = rollout.generate_sequences(prompts)
    responses, mask = out.batch["responses"], out.batch["response_mask"]
    assert responses.shape == (16, 16) and not torch.isin(responses, torch.tensor(rollout.suppress)).any()
    for row, m in zip(responses, mask):
        n = int(m.sum())
        assert m[:n].all() and not m[n:].any()  # a prefix
        eos = [i for i, t in enumerate(row[:n].tolist()) if t in rollout.eos_ids]
        assert eos in ([], [n - 1])  # EOS, if any, is the last kept token
        assert (row[n:] == rollout.pad_id).all()
    greedy = rollout.generate_sequences(prompts.__class__(prompts.batch, prompts.non_tensor_batch,
                                                          {"validate": True}))
    again = rollout.generate_sequences(prompts.__class__(prompts.batch, prompts.non_tensor_batch, {"validate": True}))
    assert len(greedy) == 4 and torch.equal(greedy.batch["responses"], again.batch["responses"])  # greedy, n=1


def test_gradient_checkpointing_gives_the_same_update(tiny_vl, tiny_vl_path, batch):
    processor, _ = tiny_vl
    plain = make_actor(tiny_vl_path, processor, ppo_micro_batch_size_per_gpu=4)
    checkpointed = make_actor(tiny_vl_path, processor, ppo_micro_batch_size_per_gpu=4)
    checkpointed.model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    a, b = plain.update_policy(batch, 8), checkpointed.update_policy(batch, 8)
    assert a["actor/grad_norm"] == pytest.approx(b["actor/grad_norm"], rel=1e-5)


def test_warmup_then_constant_or_cosine_learning_rate():
    from torch import nn

    def lrs(style):
        optimizer, scheduler = build_optimizer(nn.Linear(2, 2), OptimConfig(lr=1.0, lr_warmup_steps=2,
                                               warmup_style=style, min_lr_ratio=0.1, total_training_steps=6))
        out = []
        for _ in range(6):
            out.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return out

    assert lrs("constant") == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0, 1.0])
    cosine = lrs("cosine")
    assert cosine[:3] == pytest.approx([0.5, 1.0, 1.0]) and cosine[3] > cosine[4] > cosine[5] >= 0.1


def test_text_only_model_trains_through_the_causal_lm_path(tmp_path, shapes_files):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from verlvl.data.collate import collate_to_dataproto
    from verlvl.data.config import DataConfig
    from verlvl.data.rl_dataset import RLDataset
    from verlvl.models.processor import load_processor, load_tokenizer
    from verlvl.models.tiny import build_tiny_qwen_text

    path = build_tiny_qwen_text(tmp_path / "text")
    assert load_processor(path) is None
    tokenizer = load_tokenizer(path)
    rows = [{"data_source": "openai/gsm8k", "prompt": [{"role": "user", "content": f"What is {i} plus {i}?"}],
             "reward_model": {"ground_truth": str(2 * i)}} for i in range(4)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "gsm.parquet")
    ds = RLDataset([str(tmp_path / "gsm.parquet")], tokenizer, None, DataConfig(max_prompt_length=64))
    prompts = collate_to_dataproto([ds[i] for i in range(4)])
    assert prompts.batch["position_ids"].shape == (4, 64)  # 1-D positions for a text model
    model = load_model(str(path))
    assert type(model).__name__ == "Qwen2ForCausalLM"
    out = HFRollout(model, tokenizer, None, RolloutConfig(n=2, response_length=8)).generate_sequences(prompts)
    actor = PPOActor(model, ActorConfig(), None, never_sampled=never_sampled_ids(tokenizer))
    log_probs, _ = actor.compute_log_prob(out, 4)
    mask = out.batch["response_mask"].bool()
    assert (log_probs - out.batch["rollout_log_probs"])[mask].abs().max() <= 1e-4


def test_rollout_correction_weights_reach_the_policy_loss(tiny_vl, tiny_vl_path, batch):
    """algorithm.rollout_correction's importance weights (computed on the driver) scale each token's loss."""
    processor, _ = tiny_vl
    plain = make_actor(tiny_vl_path, processor, ppo_micro_batch_size_per_gpu=4)
    weighted = make_actor(tiny_vl_path, processor, ppo_micro_batch_size_per_gpu=4)
    data = batch.select(deepcopy=True)
    data.batch["rollout_is_weights"] = torch.full_like(data.batch["old_log_probs"], 0.5)
    a, b = plain.update_policy(batch, 8), weighted.update_policy(data, 8)
    assert b["actor/pg_loss"] == pytest.approx(0.5 * a["actor/pg_loss"], rel=1e-5)
    assert b["actor/grad_norm"] == pytest.approx(0.5 * a["actor/grad_norm"], rel=1e-4)
