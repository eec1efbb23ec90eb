"""veRL's trainer and data keys made real: balance_batch, max_critic_ckpt_to_keep, reward_fn_key,
custom_chat_template."""

import numpy as np
import torch

from verlvl.protocol import DataProto
from verlvl.trainer.balance import balance_batch, balanced_partitions
from verlvl.trainer.checkpoint import Checkpointer


def test_balanced_partitions_are_equal_sized_and_close_in_tokens():
    tokens = [100, 1, 1, 100, 50, 50, 2, 90]
    parts = balanced_partitions(tokens, 2)
    assert sorted(i for p in parts for i in p) == list(range(8)) and [len(p) for p in parts] == [4, 4]
    sums = [sum(tokens[i] for i in p) for p in parts]
    assert max(sums) - min(sums) <= 12  # in order the halves would be 202 and 192... here: as close as greedy gets


def test_balance_batch_reorders_whole_rows_so_each_worker_gets_similar_tokens():
    lengths = [8, 8, 8, 8, 1, 1, 1, 1]  # in order: worker 0 gets 32 tokens, worker 1 gets 4
    mask = torch.zeros(8, 8, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    batch = DataProto.from_dict({"attention_mask": mask, "row": torch.arange(8)},
                                {"uid": np.array([f"u{i}" for i in range(8)], dtype=object)})
    metrics = balance_batch(batch, 2)
    rows = batch.batch["row"].tolist()
    assert sorted(rows) == list(range(8))
    assert [batch.non_tensor_batch["uid"][i] for i in range(8)] == [f"u{r}" for r in rows]  # rows move whole
    halves = [batch.batch["attention_mask"][:4].sum().item(), batch.batch["attention_mask"][4:].sum().item()]
    assert halves == [18, 18]
    assert metrics["global_seqlen/minmax_diff"] == 28 and metrics["global_seqlen/balanced_max"] == 18
    assert balance_batch(batch[:7], 2) == {}  # uneven: left as it is


def test_actor_and_critic_checkpoints_are_pruned_by_their_own_limits(tmp_path):
    for step in (1, 2, 3, 4):
        for role in ("actor", "critic"):
            (tmp_path / f"global_step_{step}" / role).mkdir(parents=True)
    cfg = {"trainer": {"max_actor_ckpt_to_keep": 2, "max_critic_ckpt_to_keep": 3}}
    Checkpointer(cfg, tmp_path)._prune()
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob("global_step_*/*"))
    assert left == ["global_step_2/critic", "global_step_3/actor", "global_step_3/critic", "global_step_4/actor",
                    "global_step_4/critic"]
    assert not (tmp_path / "global_step_1").exists()


def test_reward_fn_key_names_the_column_passed_as_data_source(tmp_path, tiny_vl):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from verlvl.data.collate import collate_to_dataproto
    from verlvl.data.config import DataConfig
    from verlvl.data.rl_dataset import RLDataset
    from verlvl.trainer.task_runner import build_reward

    processor, _ = tiny_vl
    rows = [{"data_source": "ignored", "task": "verlvl/shapes", "prompt": [{"role": "user", "content": "Colour?"}],
             "reward_model": {"ground_truth": "red"}}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    ds = RLDataset([str(tmp_path / "t.parquet")], processor.tokenizer, processor,
                   DataConfig(max_prompt_length=64, reward_fn_key="task"))
    batch = collate_to_dataproto([ds[0]])
    assert batch.non_tensor_batch["task"][0] == "verlvl/shapes"
    manager = build_reward({"data": {"reward_fn_key": "task", "max_response_length": 4},
                            "reward_model": {"num_workers": 1}, "actor_rollout_ref": {"model": {}}}, processor.tokenizer)
    try:
        assert manager.reward_fn_key == "task"
    finally:
        manager.close()


def test_custom_chat_template_replaces_the_tokenizers_and_processors(tiny_vl_path):
    from verlvl.models.processor import load_processor, load_tokenizer, use_chat_template

    tokenizer, processor = load_tokenizer(tiny_vl_path), load_processor(tiny_vl_path)
    template = "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
    use_chat_template(tokenizer, processor, template)
    messages = [{"role": "user", "content": "hi"}]
    assert tokenizer.apply_chat_template(messages, tokenize=False) == "[user]hi"
    assert processor.chat_template == template
