"""Scorers for the users' datasets (dmmrl, r1_vlm, LMM-R1), routed by data_source: hand-checked right, wrong,
malformed and format-only replies."""

import pytest

from verlvl.reward.scorers import default_compute_score


def score(data_source, reply, truth, extra_info=None):
    return default_compute_score(data_source, reply, truth, extra_info)


def test_gsm8k_and_math_lighteval_are_routed_to_the_existing_scorers():
    assert score("openai/gsm8k", "3 + 4 = 7 so #### 7", "7")["score"] == 1.0
    assert score("openai/gsm8k", "#### 8", "7")["score"] == 0.0
    assert score("openai/gsm8k", "no number at all", "7")["score"] == 0.0
    math = lambda reply: score("DigitalLearningGmbH/MATH-lighteval", reply, "\\frac{1}{2}")["score"]
    assert (math("so \\boxed{0.5}"), math("\\boxed{\\frac{2}{4}}"), math("\\boxed{2}"), math("one half")) == \
        (1.0, 1.0, 0.0, 0.0)


@pytest.mark.parametrize("reply,acc,fmt", [
    ("<think>plants make food</think> <answer>B</answer>", 1.0, 1.0),
    ("<think>x</think><answer>\\boxed{B}</answer>", 1.0, 1.0),
    ("<think>x</think><answer>(B) photosynthesis</answer>", 1.0, 1.0),
    ("the answer is \\boxed{B}", 1.0, 0.0),
    ("The answer is (B).", 1.0, 0.0),
    ("B", 1.0, 0.0),
    ("<think>x</think><answer>A</answer>", 0.0, 1.0),        # format only
    ("<think>x</think><answer>Both</answer>", 0.0, 1.0),     # a word, not a letter
    ("I am not sure", 0.0, 0.0),                              # malformed
])
def test_scienceqa_letter_choice(reply, acc, fmt):
    out = score("derek-thomas/ScienceQA", reply, "B")
    assert (out["score"], out["acc"], out["format"]) == (acc, acc, fmt)


def test_mmmu_letter_and_open_questions():
    assert score("lmms-lab/MMMU", "<think>t</think><answer>C</answer>", "C",
                 {"question_type": "multiple-choice"})["score"] == 1.0
    assert score("lmms-lab/MMMU", "\\boxed{D}", "C", {"question_type": "multiple-choice"})["score"] == 0.0
    open_q = {"question_type": "open"}
    assert score("lmms-lab/MMMU", "\\boxed{0.5}", "1/2", open_q)["score"] == 1.0
    assert score("lmms-lab/MMMU", "<answer>3.429</answer>", "['24/7', '3.429']", open_q)["score"] == 1.0
    assert score("lmms-lab/MMMU", "<answer>3</answer>", "['24/7', '3.429']", open_q)["score"] == 0.0
    assert score("lmms-lab/MMMU", "no final answer", "1/2", open_q)["score"] == 0.0


@pytest.mark.parametrize("reply,truth,task,acc,fmt", [
    ("<think>I see 5, 1 and 2</think>\n<answer>[1, 2, 5]</answer>", "[1, 2, 5]", "recognition", 1.0, 1.0),
    ("Let me solve this step by step.\n<think>a 3 and a 4</think>\n<answer> 7 </answer>", "7", "addition", 1.0, 1.0),
    ("<think>hm</think>\n<answer>[5, 2, 1]</answer>", "[1, 2, 5]", "recognition", 0.0, 1.0),  # not sorted
    ("<think>hm</think>\n<answer>8</answer>", "7", "addition", 0.0, 1.0),                     # format only
    ("<think>hm</think> <answer>7</answer>", "7", "addition", 1.0, 0.0),                      # no newline: r1_vlm's rule
    ("<answer>[1, 2, 5]</answer>", "[1, 2, 5]", "recognition", 1.0, 0.0),
    ("the digits are 1, 2, 5", "[1, 2, 5]", "recognition", 0.0, 0.0),                        # malformed
    ("<think>x</think>\n<answer>seven</answer>", "7", "addition", 0.0, 1.0),
])
def test_r1_vlm_digits_correctness_plus_format(reply, truth, task, acc, fmt):
    out = score("sunildkumar/digit-recognition", reply, truth, {"task": task})
    assert (out["acc"], out["format"], out["score"]) == (acc, fmt, acc + fmt)


def test_builtin_digits_reads_the_answer_at_the_start():
    builtin = lambda reply, truth, task: score("verlvl/digits", reply, truth, {"task": task})["score"]
    assert builtin("1 3", "1 3", "list") == 1.0 and builtin("[1, 3]", "1 3", "list") == 1.0
    assert builtin("3 1", "1 3", "list") == 0.0 and builtin("1", "1 3", "list") == 0.0
    assert builtin("4", "4", "sum") == 1.0 and builtin("14", "4", "sum") == 0.0 and builtin("four", "4", "sum") == 0.0


@pytest.mark.parametrize("reply,acc,fmt", [
    ("<think>2+2</think><answer>\\boxed{4}</answer>", 1.0, 1.0),
    ("<think>2+2</think><answer>4</answer>", 1.0, 1.0),
    ("<think>a</think>\n<answer>4</answer>", 1.0, 0.0),          # LMM-R1 allows nothing between the blocks
    ("<think>a</think><answer>4</answer> done", 1.0, 0.0),       # nor after
    ("so it is \\boxed{4}", 1.0, 0.0),
    ("<think>a</think><answer>5</answer>", 0.0, 1.0),            # format only
    ("<think>a<think>b</think><answer>4</answer>", 1.0, 0.0),    # two think tags
    ("four", 0.0, 0.0),                                          # malformed
])
def test_lmm_r1_accuracy_plus_half_format(reply, acc, fmt):
    for source in ("VLM-Reasoner/deepscaler", "VLM-Reasoner/VerMulti", "lmm_r1/math_level345"):
        out = score(source, reply, "$4$")
        assert (out["acc"], out["format"], out["score"]) == (acc, fmt, acc + 0.5 * fmt), source


def test_dapo_style_minus_one_zero_one_is_the_existing_math_dapo_rule():
    rule = lambda reply: score("math_dapo", reply, "4")["score"]
    assert (rule("\\boxed{4}"), rule("\\boxed{5}"), rule("4")) == (1.0, 0.0, -1.0)
