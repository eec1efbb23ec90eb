"""Does the tiny model learn the built-in digits task on CPU? A main_ppo run, its steps and minutes, against the best constant.

Run: python tests/bench/bench_digits_learning.py [--steps 300] [--num_classes 3] [--max_digits 1] [--tasks list,sum]
[any main_ppo a.b=v override]
It writes the task into a fresh cache, trains with +experiment=digits_cpu (the CPU demo preset, GRPO, with the
entropy bonus and lr schedule that let the tiny model learn glyphs), and prints the held-out greedy accuracy at
each validation beside the best a constant answer gets on the same rows. The plain command is the learning run
(3 classes, one digit, 300 steps: about 4 minutes on 2 shared cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from verlvl.data.digits_task import write
from verlvl.reward.scorers import default_compute_score

VAL_KEY = "val-core/verlvl/digits/acc/mean@1"


def best_constant(test_file: str) -> tuple[str, float]:
    import pyarrow.parquet as pq

    rows = pq.read_table(test_file).to_pylist()
    truths = [r["reward_model"]["ground_truth"] for r in rows]
    scores = {c: sum(default_compute_score("verlvl/digits", c, t, r["extra_info"])["score"]
                     for t, r in zip(truths, rows)) / len(rows) for c in set(truths)}
    answer = max(scores, key=scores.get)
    return answer, scores[answer]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--num_classes", type=int, default=3)
    parser.add_argument("--max_digits", type=int, default=1)
    parser.add_argument("--image_size", type=int, default=56)
    parser.add_argument("--test_freq", type=int, default=50)
    parser.add_argument("--tasks", default="list,sum", help="comma-separated prompts: list, sum or both")
    args, overrides = parser.parse_known_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench_digits_"))
    files = write(str(work / "data"), num_classes=args.num_classes, max_digits=args.max_digits,
                  image_size=args.image_size, tasks=args.tasks)
    constant, constant_acc = best_constant(files["test"])
    run_dir = work / "run"
    # the digits and the spaces between them; no end-of-sequence token is needed (the scorer reads the first line)
    command = [sys.executable, "-m", "verlvl.main_ppo", "+experiment=digits_cpu", f"data.train_files={files['train']}",
               f"data.val_files={files['test']}", f"data.max_response_length={2 * args.max_digits - 1}",
               f"trainer.total_training_steps={args.steps}", f"trainer.test_freq={args.test_freq}",
               "trainer.save_freq=-1", f"trainer.default_local_dir={run_dir}", *overrides]
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO, env={**__import__("os").environ, "VERLVL_CACHE": str(work)},
                   stdout=subprocess.DEVNULL)
    minutes = (time.perf_counter() - start) / 60
    steps: dict[int, dict] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        steps.setdefault(row["step"], {}).update(row)
    curve = {s: steps[s][VAL_KEY] for s in sorted(steps) if VAL_KEY in steps[s]}
    print(f"digits ({args.tasks}): {args.num_classes} classes, up to {args.max_digits} digit(s), {args.image_size}px; "
          f"best constant answer {constant!r} scores {constant_acc:.3f} on the test rows")
    for s, acc in curve.items():
        print(f"  step {s:4d}: held-out greedy accuracy {acc:.3f} ({acc / constant_acc:.2f}x the constant)")
    print(f"{args.steps} steps in {minutes:.1f} min (whole command, start-up included)")
    return {"curve": curve, "best_constant": constant_acc, "minutes": minutes}


if __name__ == "__main__":
    main()
