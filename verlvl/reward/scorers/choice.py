"""Multiple choice (ScienceQA, MMMU): the chosen letter against the ground truth; MMMU's open questions by value.

The letter is read from the last <answer>...</answer>, else the last \\boxed{}, else a phrase like
'the answer is (B)', else a reply that is only a letter. Score is accuracy (1/0); `format` (dmmrl's
<think>/<answer> rule) is logged beside it, not added.
"""

from __future__ import annotations

import ast
import re

from verlvl.reward.scorers import register_scorer
from verlvl.reward.scorers.math_verify_utils import is_equivalent, last_boxed
from verlvl.reward.scorers.r1_format import answer_text, dmmrl_format

LEADING_LETTER = re.compile(r"^\(?([A-Z])\)?(?:[\s.:)]|$)")
ANSWER_PHRASE = re.compile(r"answer\s*(?:is|:)?\s*[:\s]\s*\(?([A-Z])\)?(?![A-Za-z])", re.IGNORECASE)


def final_answer(response: str) -> str | None:
    """What the response gives as its answer: <answer> content, else the last \\boxed{}, else None."""
    text = answer_text(response)
    if text is not None:
        boxed = last_boxed(text)
        return boxed.strip() if boxed is not None else text
    boxed = last_boxed(response)
    return boxed.strip() if boxed is not None else None


def extract_letter(response: str) -> str | None:
    candidate = final_answer(response)
    if candidate is not None:
        candidate = re.sub(r"^\\text\{(.*)\}$", r"\1", candidate.strip())
        match = LEADING_LETTER.match(candidate)
        return match.group(1) if match else None
    phrases = ANSWER_PHRASE.findall(response)
    if phrases:
        return phrases[-1].upper()
    match = re.fullmatch(r"\s*\(?([A-Z])\)?\.?\s*", response)
    return match.group(1) if match else None


def gold_values(ground_truth) -> list[str]:
    """MMMU's open answers are sometimes a list literal of accepted values."""
    text = str(ground_truth).strip()
    if text.startswith("["):
        try:
            values = ast.literal_eval(text)
            if isinstance(values, list):
                return [str(v) for v in values]
        except (ValueError, SyntaxError):
            pass
    return [text]


def open_match(response: str, ground_truth) -> tuple[float, str | None]:
    answer = final_answer(response)
    if answer is None:
        return 0.0, None
    norm = lambda s: re.sub(r"[\s$]+", "", s).rstrip(".").lower()
    hit = any(norm(answer) == norm(g) or is_equivalent(answer, g) for g in gold_values(ground_truth))
    return float(hit), answer


@register_scorer("derek-thomas/ScienceQA", "armanc/ScienceQA", "lmms-lab/MMMU", "MMMU/MMMU")
def compute_score(data_source, solution_str, ground_truth, extra_info=None) -> dict:
    truth = str(ground_truth).strip()
    is_open = (extra_info or {}).get("question_type") == "open" or not re.fullmatch(r"[A-Z]", truth)
    if is_open:
        acc, answer = open_match(solution_str, ground_truth)
    else:
        answer = extract_letter(solution_str)
        acc = float(answer == truth)
    return {"score": acc, "acc": acc, "format": dmmrl_format(solution_str), "answered": float(answer is not None)}
