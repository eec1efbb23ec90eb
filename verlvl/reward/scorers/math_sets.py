"""The MATH sets: the last \\boxed{} answer compared with math-verify; 1 right, 0 otherwise."""

from verlvl.reward.scorers import register_scorer
from verlvl.reward.scorers.math_verify_utils import is_equivalent, last_boxed


@register_scorer("lighteval/MATH", "DigitalLearningGmbH/MATH-lighteval", "HuggingFaceH4/MATH-500",
                 "hendrycks/competition_math", "math")
def compute_score(data_source, solution_str, ground_truth, extra_info=None) -> dict:
    answer = last_boxed(solution_str)
    acc = 1.0 if answer is not None and is_equivalent(answer, str(ground_truth)) else 0.0
    return {"score": acc, "acc": acc, "format": float(answer is not None)}
