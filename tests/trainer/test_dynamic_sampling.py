"""DAPO's dynamic sampling: which groups are kept, merged rewards, and a run on 2 workers."""

import numpy as np
import pytest
import torch

from tests.trainer.helpers import SHORT, compose_config
from verlvl.main_ppo import run_ppo
from verlvl.trainer.dynamic_sampling import NotEnoughGroups, merge_rewards, varied_groups


def test_only_groups_whose_responses_differ_are_kept():
    uids = np.array(["a", "a", "b", "b", "c", "c", "d"], dtype=object)
    values = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0])
    rows, kept, seen = varied_groups(uids, values)
    assert rows == [0, 1, 6] and (kept, seen) == (2, 4)  # a differs; b, c agree; d has one response


def test_rewards_of_several_generation_batches_merge_counts_and_means():
    a = {"reward_tensor": torch.ones(2, 3), "reward_extra_info": {"acc": [1.0, 0.0]},
         "reward_metrics": {"reward/acc/mean": 0.5, "reward/errors": 1.0, "reward/outcome/1": 2.0}}
    b = {"reward_tensor": torch.zeros(4, 3), "reward_extra_info": {"acc": [1.0, 1.0, 1.0, 1.0]},
         "reward_metrics": {"reward/acc/mean": 1.0, "reward/errors": 0.0, "reward/outcome/1": 4.0}}
    merged = merge_rewards([(a, 2), (b, 4)])
    assert merged["reward_tensor"].shape == (6, 3) and merged["reward_extra_info"]["acc"][2:] == [1.0] * 4
    assert merged["reward_metrics"] == {"reward/acc/mean": pytest.approx(5 / 6), "reward/errors": 1.0,
                                        "reward/outcome/1": 6.0}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dapo_experiment_runs_with_dynamic_sampling_and_says_when_it_gives_up(ray_local, tmp_path, monkeypatch):
    monkeypatch.setenv("VERLVL_CACHE", str(tmp_path / "cache"))
    run_dir = tmp_path / "dapo"
    result = run_ppo(compose_config("+experiment=dapo_shapes", "trainer.total_training_steps=2",
                                    "trainer.val_before_train=false", "trainer.test_freq=-1", "trainer.save_final=false",
                                    "trainer.logger=[jsonl]", "data.train_batch_size=4", "data.gen_batch_size=8",
                                    "actor_rollout_ref.actor.ppo_mini_batch_size=4", "actor_rollout_ref.rollout.n=4",
                                    f"trainer.default_local_dir={run_dir}"))
    m = result.metrics
    assert m["train/num_gen_batches"] >= 1 and m["train/num_prompts_dropped"] >= 0
    assert m["critic/advantages/max"] > 0  # every kept group has a non-zero advantage somewhere
    assert "reward/overlong/mean" in m  # the overlong buffer's log
    with pytest.raises(NotEnoughGroups, match="max_num_gen_batches=1"):
        run_ppo(compose_config(*SHORT, "trainer.total_training_steps=1", "algorithm.filter_groups.enable=true",
                               "algorithm.filter_groups.metric=seq_reward", "algorithm.filter_groups.max_num_gen_batches=1",
                               "custom_reward_function.path=" + str(_constant_reward(tmp_path)),
                               f"trainer.default_local_dir={tmp_path / 'never'}"))


def _constant_reward(tmp_path):
    path = tmp_path / "constant.py"
    path.write_text("def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kw):\n"
                    "    return 1.0\n")
    return path
