"""LMM-R1's rule (openrlhf/models/remote_rm/math_verifier.py): accuracy by math-verify plus 0.5 for the format.

Accuracy: the answer (the last \\boxed{} inside <answer>, else the <answer> text, else the last \\boxed{}
of the reply) equals the ground truth (LaTeX, '$' delimiters dropped) by math-verify. Format: exactly one
<think>...</think> immediately followed by one <answer>...</answer> and nothing else. Score = acc + 0.5 *
format, in {0, 0.5, 1, 1.5}, as LMM-R1's reward server returns it. (LMM-R1 gives 1 when the gold answer
itself cannot be parsed; here that row scores by exact text match instead, so a bad row is not free reward.)
"""

from __future__ import annotations

from verlvl.reward.scorers import register_scorer
from verlvl.reward.scorers.choice import final_answer
from verlvl.reward.scorers.math_verify_utils import is_equivalent, last_boxed
from verlvl.reward.scorers.r1_format import lmm_r1_format


def strip_dollars(text: str) -> str:
    return str(text).strip().strip("$").strip()


@register_scorer("VLM-Reasoner/deepscaler", "VLM-Reasoner/VerMulti", "lmm_r1/math_level345")
def compute_score(data_source, solution_str, ground_truth, extra_info=None) -> dict:
    answer = final_answer(solution_str)
    if answer is None:
        answer = last_boxed(solution_str)
    acc = float(answer is not None and is_equivalent(strip_dollars(answer), strip_dollars(ground_truth)))
    fmt = lmm_r1_format(solution_str)
    return {"score": acc + 0.5 * fmt, "acc": acc, "format": fmt}
