"""verlvl/zoom (the built-in tool task): 1 when the last colour word of the final answer is the asked mark's colour."""

import re

from verlvl.data.zoom_task import COLORS
from verlvl.reward.scorers import register_scorer


@register_scorer("verlvl/zoom")
def compute_score(data_source, solution_str, ground_truth, extra_info=None) -> dict:
    # a multi-turn response holds the tool turns too: the answer is what follows the last assistant header
    final = solution_str.rsplit("assistant\n", 1)[-1]
    words = [w for w in re.findall(r"[a-z]+", final.lower()) if w in COLORS]
    acc = float(bool(words) and words[-1] == str(ground_truth).lower())
    return {"score": acc, "acc": acc, "format": float(bool(words))}
