"""Benchmark: scoring 1000 geo3k-style responses with the built-in scorer, through the scoring pool
(per-call timeouts, 2 processes) against a plain in-process loop over the same function.

Run: `make bench`. Prints a table; asserts only that both paths agree.
"""

import random
import time

from verlvl.reward.managers import BUILTIN_SCORER
from verlvl.reward.scorers import default_compute_score
from verlvl.reward.scoring import RewardScorer, Sample


def geo3k_like(n: int, seed: int = 0) -> list[Sample]:
    rng = random.Random(seed)
    truths = ["11", "\\frac{3}{2}", "2\\sqrt{3}", "45", "12.5", "x=7", "60", "\\pi"]
    answers = ["11", "1.5", "\\sqrt{12}", "44", "\\frac{25}{2}", "7", "sixty", "3.14"]
    out = []
    for i in range(n):
        k = rng.randrange(len(truths))
        think = "<think>" + "we use the angle sum and similar triangles. " * rng.randint(1, 6) + "</think>"
        body = f"{think} The answer is \\boxed{{{answers[k]}}}." if rng.random() < 0.85 else think + " no idea"
        out.append(Sample("hiyouga/geometry3k", body, truths[k]))
    return out


def test_reward_scoring_throughput():
    samples = geo3k_like(1000)
    start = time.perf_counter()
    loop_scores = [default_compute_score(s.data_source, s.solution_str, s.ground_truth)["score"] for s in samples]
    t_loop = time.perf_counter() - start
    scorer = RewardScorer(BUILTIN_SCORER, num_workers=2, timeout_s=10)
    try:
        scorer.score(samples[:4])  # start the processes and import math-verify there
        start = time.perf_counter()
        outcomes = scorer.score(samples)
        t_pool = time.perf_counter() - start
    finally:
        scorer.close()
    assert [o.score for o in outcomes] == loop_scores
    print(f"\n| scoring 1000 geo3k responses | seconds | responses/s |\n|---|---|---|\n"
          f"| in-process loop (no timeout) | {t_loop:.2f} | {1000 / t_loop:.0f} |\n"
          f"| verlvl pool, 2 processes, 10 s timeout each | {t_pool:.2f} | {1000 / t_pool:.0f} |\n"
          f"| ratio pool / loop | {t_pool / t_loop:.2f}x | |")
