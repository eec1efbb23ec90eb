"""hiyouga/geometry3k: <think>...</think> then \\boxed{answer}; 0.9 accuracy (math-verify) + 0.1 format."""

import re

from verlvl.reward.scorers import register_scorer
from verlvl.reward.scorers.math_verify_utils import is_equivalent, last_boxed

FORMAT = re.compile(r"^\s*<think>.*?</think>.*\\boxed\{.*\}.*$", re.DOTALL)


@register_scorer("hiyouga/geometry3k")
def compute_score(data_source, solution_str, ground_truth, extra_info=None) -> dict:
    fmt = 1.0 if FORMAT.match(solution_str) else 0.0
    answer = last_boxed(solution_str)
    acc = 1.0 if answer is not None and is_equivalent(answer, str(ground_truth)) else 0.0
    return {"score": 0.9 * acc + 0.1 * fmt, "acc": acc, "format": fmt}
