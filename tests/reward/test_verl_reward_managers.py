"""Reward managers written for veRL (register, AbstractRewardManager, compute_score as a function) work here."""

import textwrap

import pytest
import torch

from tests.reward.helpers import generated_batch
from verlvl.reward.function import RewardFunctionSpec
from verlvl.reward.managers import (REWARD_MANAGERS, AbstractRewardManager, NaiveRewardManager, VerlRewardManager,
                                    build_reward_manager, register)


@pytest.fixture(scope="module")
def tokenizer(tiny_vl_path):
    from verlvl.models.processor import load_tokenizer

    return load_tokenizer(str(tiny_vl_path))


@pytest.fixture
def last_token_manager():
    @register("verl_last_token")
    class LastTokenManager(AbstractRewardManager):
        closed = False

        def __init__(self, tokenizer, num_examine, compute_score=None, reward_fn_key="data_source"):
            self.tokenizer, self.compute_score, self.reward_fn_key = tokenizer, compute_score, reward_fn_key

        def __call__(self, data, return_dict=False):
            rewards = torch.zeros_like(data.batch["responses"], dtype=torch.float32)
            for i in range(len(data)):
                item = data[i]
                valid = int(item.batch["attention_mask"][item.batch["prompts"].shape[-1]:].sum())
                text = self.tokenizer.decode(item.batch["responses"][:valid], skip_special_tokens=True)
                score = self.compute_score(data_source=item.non_tensor_batch[self.reward_fn_key], solution_str=text,
                                           ground_truth=item.non_tensor_batch["reward_model"]["ground_truth"])
                rewards[i, valid - 1] = score["score"] if isinstance(score, dict) else score  # as veRL's naive
            return {"reward_tensor": rewards, "reward_extra_info": {"hit": rewards.sum(-1).tolist()}} \
                if return_dict else rewards

        def close(self):
            type(self).closed = True

    yield LastTokenManager
    del REWARD_MANAGERS["verl_last_token"]


def test_a_veRL_manager_gets_the_reward_function_itself_and_answers_like_ours(tmp_path, tokenizer,
                                                                              last_token_manager):
    path = tmp_path / "ends_with.py"
    path.write_text(textwrap.dedent("""
        def compute_score(data_source, solution_str, ground_truth, extra_info=None, bonus=0.0):
            return float(solution_str.strip().endswith(ground_truth)) + bonus
    """))
    spec = RewardFunctionSpec(path=str(path), reward_kwargs={"bonus": 0.5})
    manager = build_reward_manager("verl_last_token", tokenizer, spec, num_workers=2, timeout_s=1.0)
    assert isinstance(manager, VerlRewardManager) and isinstance(manager.manager, last_token_manager)
    data = generated_batch(tokenizer, ["the answer is 12", "it is 3"], ["12", "4"])
    out = manager(data, return_dict=True)
    assert out["reward_tensor"].sum(-1).tolist() == [1.5, 0.5]
    assert out["reward_extra_info"] == {"hit": [1.5, 0.5], "score": [1.5, 0.5]} and out["reward_metrics"] == {}
    assert torch.equal(manager(data), out["reward_tensor"])
    manager.close()
    assert last_token_manager.closed


def test_without_a_custom_function_a_veRL_manager_gets_the_builtin_scorers(tokenizer, last_token_manager):
    manager = build_reward_manager("verl_last_token", tokenizer, None)
    data = generated_batch(tokenizer, ["<think>x</think> \\boxed{12}"], ["12"], data_source="openai/gsm8k")
    assert manager.manager.compute_score.__name__ == "default_compute_score"
    assert manager(data, return_dict=True)["reward_extra_info"]["score"][0] in (0.0, 1.0)


def test_register_refuses_a_second_class_under_a_taken_name(last_token_manager):
    assert register("verl_last_token")(last_token_manager) is last_token_manager  # the same class again: fine
    with pytest.raises(ValueError, match="reward manager 'naive' is already registered"):
        register("naive")(last_token_manager)
    assert isinstance(build_reward_manager("naive", None, None, num_workers=1), NaiveRewardManager)
