"""The seed tutorial's rule (math_verify_for_dapo): boxed answer by math-verify; 1 right, 0 wrong, -1 no box."""

from verlvl.reward.scorers import register_scorer
from verlvl.reward.scorers.math_verify_utils import is_equivalent, last_boxed


@register_scorer("math_dapo", "math_verify_boxed")
def compute_score(data_source, solution_str, ground_truth, extra_info=None) -> dict:
    answer = last_boxed(solution_str)
    if answer is None:
        return {"score": -1.0, "acc": 0.0, "pred": ""}
    acc = 1.0 if is_equivalent(answer, str(ground_truth)) else 0.0
    return {"score": acc, "acc": acc, "pred": answer}
