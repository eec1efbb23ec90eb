"""The R1 response format (<think>...</think><answer>...</answer>): the answer's text and each project's check."""

from __future__ import annotations

import re

ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
# dmmrl's format_reward (rewarder/rule_rewards.py): think then answer, whitespace between allowed.
DMMRL_FORMAT = re.compile(r"^<think>.*?</think>\s*<answer>.*?</answer>$", re.DOTALL | re.MULTILINE)
# r1_vlm's digit-recognition check: a think block without nested think tags, a newline, then the answer.
R1_VLM_FORMAT = re.compile(r"^<think>([^<]*(?:<(?!/?think>)[^<]*)*)</think>\n<answer>([\s\S]*?)</answer>$")
R1_VLM_PREFILL = "Let me solve this step by step.\n"
# LMM-R1's math_verifier: exactly one think and one answer block, nothing between or after them.
LMM_R1_FORMAT = re.compile(r"^<think>(?:(?!</think>).)*</think><answer>(?:(?!</answer>).)*</answer>\Z", re.DOTALL)


def answer_text(response: str) -> str | None:
    """The inside of the last <answer>...</answer>, stripped; None when there is none."""
    found = ANSWER.findall(response)
    return found[-1].strip() if found else None


def dmmrl_format(response: str) -> float:
    return float(bool(DMMRL_FORMAT.match(response.strip())))


def r1_vlm_format(response: str) -> float:
    """r1_vlm strips its own prefill before checking; the rest must be exactly think, newline, answer."""
    return float(bool(R1_VLM_FORMAT.search(response.strip().removeprefix(R1_VLM_PREFILL))))


def lmm_r1_format(response: str) -> float:
    text = response.strip()
    return float(bool(LMM_R1_FORMAT.match(text)) and text.count("<think>") == 1 and text.count("<answer>") == 1)
