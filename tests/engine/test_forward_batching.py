"""Chunked log-probs and entropy, length-sorted trimmed micro-batches, and the hf rollout's own sampling."""

import pytest
import torch

from verlvl.engine.batching import MicroBatches, RowLengths, padding_ratio, plan_micro_batches
from verlvl.engine.logprob import token_log_probs
from verlvl.engine.loading import load_model
from verlvl.workers.config import RolloutConfig
from verlvl.workers.rollout.hf_rollout import HFRollout


def reference_log_probs(logits, tokens, temperature, never_sampled):
    logits = logits.float() / temperature
    logits = logits.index_fill(-1, torch.tensor(never_sampled), torch.finfo(logits.dtype).min)
    log_p = torch.log_softmax(logits, -1)
    return log_p.gather(-1, tokens.unsqueeze(-1)).squeeze(-1), -(log_p.exp() * log_p).sum(-1)


def test_chunked_log_probs_entropy_and_gradients_equal_the_whole_vocabulary_maths():
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 50, requires_grad=True)
    tokens = torch.randint(0, 48, (3, 7))
    # 4 positions per chunk: 21 positions make 6 chunks, the last one short
    log_probs, entropy = token_log_probs(logits, tokens, 0.7, (48, 49), True, chunk_bytes=4 * 50 * 4)
    want_lp, want_ent = reference_log_probs(logits, tokens, 0.7, [48, 49])
    assert torch.allclose(log_probs, want_lp, atol=1e-6) and torch.allclose(entropy, want_ent, atol=1e-5)
    weights = torch.randn(3, 7)
    grad, = torch.autograd.grad((log_probs * weights).sum() + entropy.sum(), logits)
    want, = torch.autograd.grad((want_lp * weights).sum() + want_ent.sum(), logits)
    assert torch.allclose(grad, want, atol=1e-5)
    log_probs, entropy = token_log_probs(logits.detach(), tokens, 1.0, (), False)
    assert entropy is None and log_probs.shape == (3, 7)


def test_micro_batches_are_length_sorted_and_within_the_token_budget():
    lengths = RowLengths(prompt=[10, 3, 10, 4, 9, 2], response=[8, 1, 2, 8, 7, 1])
    groups = plan_micro_batches(lengths, micro_size=2)
    assert groups == [[0, 3], [4, 2], [1, 5]]  # longest responses first, then longest prompts
    dynamic = plan_micro_batches(lengths, 0, use_dynamic_bsz=True, max_token_len=36)
    assert sorted(i for g in dynamic for i in g) == list(range(6))
    assert all(len(g) * lengths.width(g) <= 36 for g in dynamic)
    assert padding_ratio(lengths, groups) == pytest.approx((2 * 18 + 2 * 17 + 2 * 4) / 65)


def test_trimmed_micro_batches_give_the_untrimmed_log_probs(tiny_vl, tiny_vl_path, mixed_prompts):
    processor, _ = tiny_vl
    model = load_model(str(tiny_vl_path))
    torch.manual_seed(0)
    data = HFRollout(model, processor.tokenizer, processor, RolloutConfig(n=2, response_length=24)
                     ).generate_sequences(mixed_prompts)
    parts = MicroBatches(data, 3, False, None)
    r = data.batch["responses"].shape[1]
    widths = [mb.batch["input_ids"].shape[1] for mb in parts]
    assert max(widths) < data.batch["input_ids"].shape[1]  # columns no row uses are not computed
    assert all(mb.batch["responses"].shape[1] <= r for mb in parts)
    assert 1.0 <= parts.padding_ratio() < data.batch["input_ids"].numel() / data.batch["attention_mask"].sum()


def test_hf_sampling_ignores_the_checkpoints_generation_config(tiny_vl, tiny_vl_path, prompts):
    """Qwen-VL ships top_k=1 and repetition_penalty=1.05 in generation_config.json; with them leaking into
    sampling, every sample of a prompt is the same greedy answer and the log-probs are not the policy's."""
    processor, _ = tiny_vl
    model = load_model(str(tiny_vl_path))
    model.generation_config.top_k = 1
    model.generation_config.repetition_penalty = 1.05
    rollout = HFRollout(model, processor.tokenizer, processor, RolloutConfig(n=4, response_length=6))
    torch.manual_seed(0)
    out = rollout.generate_sequences(prompts.select(batch_keys=["input_ids", "attention_mask", "position_ids"],
                                                    non_tensor_batch_keys=list(prompts.non_tensor_batch))[:1])
    responses = out.batch["responses"]
    assert len({tuple(r.tolist()) for r in responses}) > 1, responses
    assert model.generation_config.top_k == 1  # the model's own config is left as it was


def test_packed_forwards_equal_padded_ones_for_the_actor_and_the_critic(tiny_vl, tiny_vl_path, mixed_prompts):
    """model.use_remove_padding: rows concatenated without padding, attention kept within each row by the
    position ids (sdpa's block-diagonal mask here, flash-attention varlen on GPU)."""
    from tests.workers.configs import small_critic, small_model
    from verlvl.workers.actor import PPOActor, build_optimizer
    from verlvl.workers.config import ActorConfig, OptimConfig
    from verlvl.workers.critic import PPOCritic, ValueModel

    processor, _ = tiny_vl
    torch.manual_seed(0)
    data = HFRollout(load_model(str(tiny_vl_path)), processor.tokenizer, processor,
                     RolloutConfig(n=2, response_length=12)).generate_sequences(mixed_prompts)
    data.batch["old_log_probs"] = data.batch["rollout_log_probs"]
    data.batch["advantages"] = torch.randn(data.batch["responses"].shape, generator=torch.Generator().manual_seed(1))
    mask = data.batch["response_mask"].bool()
    results = {}
    for packed in (False, True):
        model = load_model(str(tiny_vl_path))
        config = ActorConfig(ppo_micro_batch_size_per_gpu=3, entropy_coeff=0.01, optim=OptimConfig(lr=1e-3))
        actor = PPOActor(model, config, processor, *build_optimizer(model, config.optim), packed=packed)
        log_probs, entropy = actor.compute_log_prob(data, 3, 1.0, True)
        metrics = actor.update_policy(data, mini_batch_rows=8)
        critic_config = small_critic(model=small_model(path=str(tiny_vl_path), use_remove_padding=packed))
        value_model = ValueModel(str(tiny_vl_path))
        torch.nn.init.normal_(value_model.value_head.weight, generator=torch.Generator().manual_seed(2))
        values = PPOCritic(value_model, critic_config, processor).compute_values(data)
        results[packed] = (log_probs, entropy, metrics, values)
    (lp, ent, m, v), (lp_p, ent_p, m_p, v_p) = results[False], results[True]
    assert torch.allclose(lp[mask], lp_p[mask], atol=1e-5) and torch.allclose(ent[mask], ent_p[mask], atol=1e-5)
    assert lp_p[~mask].abs().max() == 0
    assert torch.allclose(v, v_p, atol=1e-5) and v_p.abs().max() > 0
    for key in ("actor/pg_loss", "actor/entropy", "actor/grad_norm"):
        assert m_p[key] == pytest.approx(m[key], abs=1e-5), key
    assert m_p["perf/padding_ratio"] == 1.0 < m["perf/padding_ratio"]
