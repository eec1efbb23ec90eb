"""openai/gsm8k: the number after '####' (veRL's strict rule), else the last number; 1 right, 0 otherwise."""

import re

from verlvl.reward.scorers import register_scorer


def extract_answer(text: str) -> str | None:
    strict = re.findall(r"#### (-?[0-9.,]+)", text)
    if strict:
        return strict[-1].replace(",", "").rstrip(".")
    numbers = re.findall(r"-?\d[\d,]*\.?\d*", text)
    return numbers[-1].replace(",", "").rstrip(".") if numbers else None


@register_scorer("openai/gsm8k")
def compute_score(data_source, solution_str, ground_truth, extra_info=None) -> dict:
    answer = extract_answer(solution_str)
    try:
        acc = float(answer is not None and float(answer) == float(str(ground_truth).replace(",", "")))
    except ValueError:
        acc = 0.0
    return {"score": acc, "acc": acc, "format": float("####" in solution_str)}
