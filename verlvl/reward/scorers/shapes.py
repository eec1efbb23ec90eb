"""verlvl/shapes (the built-in image task): 1 when the answer's first word is the shape's colour.

`format` (the first word is one of the task's colours) is logged but not rewarded: on CPU, a shaped
reward for "any colour" let tiny models settle on one colour word (see CPU_FACTS)."""

import re

from verlvl.data.shapes_task import COLORS
from verlvl.reward.scorers import register_scorer


@register_scorer("verlvl/shapes")
def compute_score(data_source, solution_str, ground_truth, extra_info=None) -> dict:
    words = re.findall(r"[a-z]+", solution_str.lower())
    first = words[0] if words else ""
    choices = (extra_info or {}).get("choices") or list(COLORS)
    acc = float(first == str(ground_truth).lower())
    return {"score": acc, "acc": acc, "format": float(first in choices)}
