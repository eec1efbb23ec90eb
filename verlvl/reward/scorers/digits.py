"""Digits: r1_vlm's digit-recognition (sorted list or sum in <answer>, plus its format rule) and the built-in task.

sunildkumar/digit-recognition follows r1_vlm's DigitRecognitionEnv: correctness (1/0: the <answer> list
equals the sorted digits, or the <answer> integer equals their sum) plus its <think>/<answer> format
check (1/0), summed as TRL sums r1_vlm's two reward functions. verlvl/digits (the built-in CPU task)
scores only the answer at the start of the reply, as the shapes task does.
"""

from __future__ import annotations

import ast
import re

from verlvl.reward.scorers import register_scorer
from verlvl.reward.scorers.r1_format import answer_text, r1_vlm_format


def truth_of(ground_truth, extra_info) -> tuple[str, list[int] | int]:
    """('recognition', sorted digits) or ('addition', total) from the row's ground truth and task."""
    text = str(ground_truth).strip()
    task = (extra_info or {}).get("task") or ("recognition" if text.startswith("[") else "addition")
    if task in ("recognition", "list"):
        value = ast.literal_eval(text) if text.startswith("[") else [int(d) for d in re.findall(r"\d", text)]
        return "recognition", sorted(int(d) for d in value)
    return "addition", int(text)


def parse_list(text: str) -> list[int] | None:
    """r1_vlm's parse: strip brackets, split on commas, every piece an integer; None otherwise."""
    try:
        return [int(x.strip()) for x in text.strip().strip("[]").split(",")]
    except ValueError:
        return None


def parse_int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


@register_scorer("sunildkumar/digit-recognition", "sunildkumar/digit-recognition-r1")
def compute_score(data_source, solution_str, ground_truth, extra_info=None) -> dict:
    task, truth = truth_of(ground_truth, extra_info)
    answer = answer_text(solution_str)
    got = None if answer is None else (parse_list(answer) if task == "recognition" else parse_int(answer))
    acc = float(got is not None and got == truth)
    fmt = r1_vlm_format(solution_str)
    return {"score": acc + fmt, "acc": acc, "format": fmt}


@register_scorer("verlvl/digits")
def compute_builtin_score(data_source, solution_str, ground_truth, extra_info=None) -> dict:
    """The first line's digits in order (list task: '1 3', '[1, 3]' and '13' all read [1, 3]; sum task:
    the first integer). `format`: the reply starts with a digit (logged, not rewarded)."""
    task, truth = truth_of(ground_truth, extra_info)
    line = solution_str.strip().split("\n", 1)[0]
    if task == "recognition":
        got = [int(d) for d in re.findall(r"\d", line)]
    else:
        numbers = re.findall(r"-?\d+", line)
        got = int(numbers[0]) if numbers else None
    acc = float(got == truth)
    return {"score": acc, "acc": acc, "format": float(bool(re.match(r"\s*\[?\d", solution_str)))}
