"""Answer extraction (last \\boxed{...}) and equivalence by math-verify, shared by the math scorers."""

from __future__ import annotations

import re


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}) with balanced braces, or None."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        match = list(re.finditer(r"\\boxed (\S+)", text))
        return match[-1].group(1) if match else None
    i = text.index("{", start) + 1
    depth, j = 1, i
    while j < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        j += 1
    return text[i:j - 1] if depth == 0 else None


def _parse(expression: str):
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    # parsing_timeout=None: math-verify's own timeout uses signals; the scoring pool enforces ours.
    return parse(f"${expression}$", extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()],
                 parsing_timeout=None)


def is_equivalent(answer: str, ground_truth: str) -> bool:
    """True when math-verify finds the two expressions equal (\\frac{1}{2} == 0.5, x=3 == 3, ...)."""
    from math_verify import verify

    if answer.strip() == ground_truth.strip():
        return True
    gold, guess = _parse(ground_truth), _parse(answer)
    if not gold or not guess:
        return False
    return bool(verify(gold, guess, timeout_seconds=None))
