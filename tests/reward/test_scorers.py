"""Built-in scorers: math-verify equivalences, geo3k's format and accuracy weights, gsm8k, the seed
tutorial's rule, the shapes task; DAPO's overlong penalty."""

import pytest

from tests.reward.helpers import generated_batch
from verlvl.reward.managers import get_reward_manager_cls
from verlvl.reward.scorers import default_compute_score
from verlvl.reward.scorers.math_verify_utils import is_equivalent, last_boxed


@pytest.mark.parametrize("answer,truth,same", [
    ("\\frac{1}{2}", "0.5", True), ("x=3", "3", True), ("3", "x = 3", True), ("\\sqrt{4}", "2", True),
    ("12.5", "\\frac{25}{2}", True), ("2\\sqrt{3}", "\\sqrt{12}", True), ("2", "3", False), ("\\pi", "3", False),
])
def test_math_verify_equivalences(answer, truth, same):
    assert is_equivalent(answer, truth) is same


def test_last_boxed_handles_nesting_and_absence():
    assert last_boxed("a \\boxed{1} then \\boxed{\\frac{1}{\\sqrt{2}}}.") == "\\frac{1}{\\sqrt{2}}"
    assert last_boxed("no box here") is None
    assert last_boxed("\\boxed{unclosed") is None


def test_geo3k_is_point_nine_accuracy_plus_point_one_format():
    score = lambda s, gt="11": default_compute_score("hiyouga/geometry3k", s, gt)  # noqa: E731
    assert score("<think>x is 11</think> so \\boxed{11}") == {"score": 1.0, "acc": 1.0, "format": 1.0}
    assert score("x is \\boxed{11}")["score"] == pytest.approx(0.9)
    assert score("<think>hmm</think> \\boxed{12}")["score"] == pytest.approx(0.1)
    assert score("<think>hmm</think> 11")["score"] == 0.0


def test_gsm8k_tutorial_rule_and_shapes():
    assert default_compute_score("openai/gsm8k", "so #### 1,234", "1234")["score"] == 1.0
    assert default_compute_score("openai/gsm8k", "I think 72 then 73", "73")["score"] == 1.0
    assert default_compute_score("openai/gsm8k", "#### 5", "6")["score"] == 0.0
    rule = lambda s: default_compute_score("math_dapo", s, "\\frac{1}{2}")["score"]  # noqa: E731
    assert (rule("\\boxed{0.5}"), rule("\\boxed{0.25}"), rule("one half")) == (1.0, 0.0, -1.0)
    shapes = lambda s: default_compute_score("verlvl/shapes", s, "red", {"choices": ["red", "green"]})  # noqa: E731
    assert shapes("Red.") == {"score": 1.0, "acc": 1.0, "format": 1.0}
    assert shapes("green") == {"score": 0.0, "acc": 0.0, "format": 1.0}
    assert shapes("it is red") == {"score": 0.0, "acc": 0.0, "format": 0.0}  # the answer must come first
    with pytest.raises(NotImplementedError, match="no built-in reward for data_source='mystery'"):
        default_compute_score("mystery", "a", "b")


def test_builtin_scorers_through_the_naive_manager(tiny_vl):
    tokenizer = tiny_vl[0].tokenizer
    manager = get_reward_manager_cls("naive")(tokenizer)
    try:
        data = generated_batch(tokenizer, ["<think>a</think> \\boxed{\\frac{1}{2}}", "\\boxed{3}"], ["0.5", "4"])
        out = manager(data, return_dict=True)
        assert out["reward_extra_info"]["score"] == [1.0, 0.0]
        assert out["reward_extra_info"]["format"] == [1.0, 0.0]
    finally:
        manager.close()


def test_dapo_overlong_buffer_penalty(tiny_vl):
    tokenizer = tiny_vl[0].tokenizer
    manager = get_reward_manager_cls("dapo")(tokenizer, max_resp_len=48, overlong_buffer_cfg={
        "enable": True, "len": 16, "penalty_factor": 1.0, "log": True})
    try:
        short = "\\boxed{4}"
        data = generated_batch(tokenizer, [short, short + " " + "1 " * 60], ["4", "4"], data_source="math_dapo",
                               response_len=48)
        out = manager(data, return_dict=True)
        n_long = int(data.batch["attention_mask"][1, data.batch["prompts"].shape[1]:].sum())
        assert n_long == 48  # fills the response budget: 16 tokens into the 16-token buffer
        assert out["reward_extra_info"]["overlong_reward"] == [0.0, -1.0]
        assert out["reward_extra_info"]["score"][0] == 1.0
        assert out["reward_extra_info"]["score"][1] == pytest.approx(out["reward_extra_info"]["acc"][1] - 1.0)
    finally:
        manager.close()
