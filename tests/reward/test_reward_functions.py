"""User reward files in veRL's form, extra keyword arguments, batch and async forms, failures counted."""

import textwrap
import time

import pytest

from tests.reward.helpers import generated_batch
from verlvl.reward.function import RewardFunctionError, RewardFunctionSpec
from verlvl.reward.managers import get_reward_manager_cls
from verlvl.reward.scoring import RewardScorer, Sample


def reward_file(tmp_path, source: str, name="my_reward.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return str(path)


VERL_FORM = """
    def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
        right = solution_str.strip().endswith(ground_truth)
        return {"score": 1.0 if right else 0.0, "acc": float(right), "length": len(solution_str)}
"""


@pytest.fixture(scope="module")
def tokenizer(tiny_vl):
    return tiny_vl[0].tokenizer


def test_verl_reward_file_works_unchanged(tmp_path, tokenizer):
    spec = RewardFunctionSpec(path=reward_file(tmp_path, VERL_FORM))
    manager = get_reward_manager_cls("naive")(tokenizer, num_examine=1, compute_score=spec)
    try:
        data = generated_batch(tokenizer, ["the answer is 12", "it is 3", "12"], ["12", "4", "12"])
        out = manager(data, return_dict=True)
        reward = out["reward_tensor"]
        lengths = data.batch["attention_mask"][:, data.batch["prompts"].shape[1]:].sum(-1)
        for i, expected in enumerate([1.0, 0.0, 1.0]):
            assert reward[i, lengths[i] - 1] == expected  # on the last valid response token
            assert reward[i].sum() == expected  # and nowhere else
        assert out["reward_extra_info"]["acc"] == [1.0, 0.0, 1.0]
        assert out["reward_extra_info"]["length"] == [16.0, 7.0, 2.0]
        assert out["reward_metrics"]["reward/acc/mean"] == pytest.approx(2 / 3)
        assert out["reward_metrics"]["reward/outcome/1"] == 2 and out["reward_metrics"]["reward/outcome/0"] == 1
        assert manager(data).shape == data.batch["responses"].shape  # veRL's plain call returns the tensor
    finally:
        manager.close()


def test_function_asking_for_more_keywords_receives_them(tmp_path, tokenizer):
    source = """
        def judge(data_source, solution_str, ground_truth, extra_info=None, *, prompt, response_length, images):
            return {"score": float(response_length), "n_images": float(len(images)),
                    "saw_prompt": float("Find x." in prompt)}
    """
    spec = RewardFunctionSpec(path=reward_file(tmp_path, source), name="judge")
    manager = get_reward_manager_cls("naive")(tokenizer, compute_score=spec)
    try:
        data = generated_batch(tokenizer, ["ab", "abcd abcd"], ["x", "y"], images=[["i1"], ["i1", "i2"]])
        out = manager(data, return_dict=True)
        lengths = data.batch["attention_mask"][:, data.batch["prompts"].shape[1]:].sum(-1).tolist()
        assert out["reward_extra_info"]["score"] == [float(n) for n in lengths]
        assert out["reward_extra_info"]["n_images"] == [1.0, 2.0]
        assert out["reward_extra_info"]["saw_prompt"] == [1.0, 1.0]
    finally:
        manager.close()


def test_batch_and_async_forms(tmp_path, tokenizer):
    batch_src = """
        def compute_score(data_sources, solution_strs, ground_truths, extra_infos, **kwargs):
            return [float(s.strip() == g) for s, g in zip(solution_strs, ground_truths)]
    """
    async_src = """
        import asyncio
        async def compute_score(data_source, solution_str, ground_truth, extra_info=None):
            await asyncio.sleep(0.01)
            return float(solution_str.strip() == ground_truth)
    """
    data = generated_batch(tokenizer, ["7", "8", "7"], ["7", "7", "7"])
    for kind, src in (("batch", batch_src), ("naive", async_src)):
        spec = RewardFunctionSpec(path=reward_file(tmp_path, src, f"{kind}.py"))
        manager = get_reward_manager_cls(kind)(tokenizer, compute_score=spec)
        try:
            assert manager(data, return_dict=True)["reward_extra_info"]["score"] == [1.0, 0.0, 1.0], kind
        finally:
            manager.close()
    with pytest.raises(ValueError, match="reward_manager=batch needs a batch function"):
        get_reward_manager_cls("batch")(tokenizer, compute_score=RewardFunctionSpec(path=reward_file(tmp_path,
                                                                                                   VERL_FORM)))
    with pytest.raises(ValueError, match="unknown reward manager 'prime'"):
        get_reward_manager_cls("prime")


def test_unusable_reward_functions_fail_at_start_with_clear_errors(tmp_path):
    with pytest.raises(RewardFunctionError, match="custom_reward_function.path=.*nope.py: no such file"):
        RewardScorer(RewardFunctionSpec(path=str(tmp_path / "nope.py")))
    path = reward_file(tmp_path, VERL_FORM)
    with pytest.raises(RewardFunctionError, match=r"has no function 'score_it' .*it defines \['compute_score'\]"):
        RewardScorer(RewardFunctionSpec(path=path, name="score_it"))
    bad = reward_file(tmp_path, "def compute_score(text, answer):\n    return 1.0\n", "bad.py")
    with pytest.raises(RewardFunctionError, match=r"does not take \['data_source', 'solution_str', 'ground_truth'\]"):
        RewardScorer(RewardFunctionSpec(path=bad))
    needs = reward_file(tmp_path, "def compute_score(data_source, solution_str, ground_truth, extra_info, judge):\n"
                                  "    return 1.0\n", "needs.py")
    with pytest.raises(RewardFunctionError, match=r"required argument\(s\) \['judge'\]"):
        RewardScorer(RewardFunctionSpec(path=needs))
    RewardScorer(RewardFunctionSpec(path=needs, reward_kwargs={"judge": "x"})).close()  # given: fine
    broken = reward_file(tmp_path, "import not_a_module\n", "broken.py")
    with pytest.raises(RewardFunctionError, match="importing it raised ModuleNotFoundError"):
        RewardScorer(RewardFunctionSpec(path=broken))


def test_raising_hanging_and_garbage_cost_only_their_samples(tmp_path, tokenizer):
    source = """
        import time
        def compute_score(data_source, solution_str, ground_truth, extra_info=None):
            if "boom" in solution_str:
                raise ZeroDivisionError("bad luck")
            if "hang" in solution_str:
                time.sleep(600)
            if "junk" in solution_str:
                return "not a number"
            return 1.0
    """
    spec = RewardFunctionSpec(path=reward_file(tmp_path, source))
    manager = get_reward_manager_cls("naive")(tokenizer, compute_score=spec, timeout_s=2.0, error_score=-0.5)
    try:
        data = generated_batch(tokenizer, ["fine", "boom", "hang", "fine", "junk", "hang", "fine"], ["x"] * 7)
        start = time.monotonic()
        out = manager(data, return_dict=True)
        assert time.monotonic() - start < 60  # two hangs cost their timeout, not the run
        assert out["reward_extra_info"]["score"] == [1.0, -0.5, -0.5, 1.0, -0.5, -0.5, 1.0]
        assert out["reward_metrics"]["reward/errors"] == 2 and out["reward_metrics"]["reward/timeouts"] == 2
        # the pool replaced its killed workers and keeps scoring
        again = manager(generated_batch(tokenizer, ["fine"] * 3, ["x"] * 3), return_dict=True)
        assert again["reward_extra_info"]["score"] == [1.0, 1.0, 1.0]
    finally:
        manager.close()


def test_config_keys_and_the_tutorial_reward_file(tmp_path):
    from pathlib import Path

    from verlvl.reward.function import spec_from_config

    assert spec_from_config({"path": None, "name": "compute_score"}) is None
    tutorial = Path(__file__).resolve().parents[2] / "recipes" / "rewards" / "math_verify_for_dapo.py"
    spec = spec_from_config({"path": str(tutorial), "reward_kwargs": {}})
    scorer = RewardScorer(spec)
    try:
        scores = [o.score for o in scorer.score([Sample("any", "\\boxed{0.5}", "\\frac{1}{2}"),
                                                 Sample("any", "\\boxed{2}", "3"), Sample("any", "none", "3")])]
        assert scores == [1.0, 0.0, -1.0]
    finally:
        scorer.close()
    with pytest.raises(RewardFunctionError, match="unknown key\\(s\\) custom_reward_function.fn"):
        spec_from_config({"path": "x.py", "fn": "f"})
