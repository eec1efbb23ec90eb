"""The built-in digits task: digits drawn with PIL, "list them from lowest to highest" or "sum them", veRL's schema.

r1_vlm's digit-recognition task made on the fly: 1..max_digits digits from 0..num_classes-1 per image
(first digits balanced across classes), the answer readable only from the image (the prompt is one of two
fixed strings). The list answer is the sorted digits separated by spaces ('1 3'), the sum answer a number.
Deterministic from the seed; scored by verlvl/reward/scorers/digits.py (data_source verlvl/digits).

Learned on CPU: `python tests/bench/bench_digits_learning.py` (= +experiment=digits_cpu: the demo preset with
entropy_coeff 0.1, a cosine lr from 1e-3 to 0, rollout n=16, a one-token response; 3 classes, 56 px, one
digit) takes the built-in tiny model (random init) from 0.00 to 0.83 held-out greedy accuracy in 300 steps,
3.3 min on 2 shared cores, against the best constant answer's 0.34 (2.4x); with trainer.seed=2 data.seed=2
1.00, with seed 3 (python -m verlvl.main_ppo +experiment=digits_cpu trainer.seed=3 data.seed=3) 0.98; 3.2-3.3
min each. With the demo's own values (entropy 0.02, n=8, constant lr) it settles on one digit by step ~100 and
stays at the constant's 0.34. Why: the model can tell the glyphs apart (trained with cross-entropy it reaches
1.0 in 200 steps of 16; a linear probe on the answer position's hidden state at init gets 0.99), but the image
moves that state little (class means 0.4 apart against a spread of 4.4 over both prompts), so the first digit
sampled correctly is raised for every image; once one digit is all the policy says, every GRPO group agrees
and no signal is left. The stronger entropy bonus on the answer token and 16 samples per image keep the other
digits sampled until the image features separate them; the decaying lr keeps the bonus from undoing a learned
answer late in the run (in a one-token GRPO simulation with a constant lr, a 2-class answer learned by step
200 was lost by step 250). Other main_ppo runs with these values: 2 classes with n=8 reach 0.98 (constant
0.50) in 300 steps, 3.4 min; 3 classes with n=8 and 500 steps end at 0.81 or 0.56 depending on the seed, with
n=16 at 0.92 (seed 2). The list/sum variants with more digits (--max_digits 2, 3) are not shown to learn on
CPU: with two digits and 2 classes (bench --max_digits 2 --num_classes 2, a 3-token response, these values)
held-out accuracy ends at 0.66 and 0.34 (seeds 1, 2; 300 steps, ~5 min) and at 0.33 after 450 steps, against
the constant's 0.45 (the 0.66 run: 0.30, 0.55, 0.50, 0.58, 0.66 at steps 100-300); list-only (--tasks list,
300 steps) at 0.16 vs 0.31, sum-only (--tasks sum) at 0.47 vs 0.44 (' 1' from step 50 on); the greedy replies
settle on one answer per prompt or repeat digits in every position ('0 1 1': the sum task reads only the first
integer, so its rewards do not penalise the trailing digits that break the list answer).
"""

from __future__ import annotations

import io
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

DATA_SOURCE = "verlvl/digits"
TASKS = {"list": "<image>List the digits from lowest to highest.", "sum": "<image>What is the sum of the digits?"}


def render(digits: list[int], rng: random.Random, size: int, jitter: float = 0.1) -> bytes:
    """The digits left to right, bold, each centred in its own slot and moved by up to `jitter` of the
    image size, black on white (MNIST-like: only the glyph varies)."""
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    slot = size / len(digits)
    font = ImageFont.load_default(size=max(8, int(min(slot * 1.1, size * 0.75))))
    stroke = max(1, size // 28)
    for k, digit in enumerate(digits):
        left, top, right, bottom = draw.textbbox((0, 0), str(digit), font=font, stroke_width=stroke)
        w, h = right - left, bottom - top
        x = k * slot + (slot - w) / 2 + rng.uniform(-jitter, jitter) * size - left
        y = (size - h) / 2 + rng.uniform(-jitter, jitter) * size - top
        draw.text((x, y), str(digit), font=font, fill=(0, 0, 0), stroke_width=stroke, stroke_fill=(0, 0, 0))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def answer_of(task: str, digits: list[int]) -> str:
    return " ".join(str(d) for d in sorted(digits)) if task == "list" else str(sum(digits))


def make_rows(n: int, split: str, seed: int, size: int, num_classes: int, max_digits: int,
              tasks: list[str]) -> list[dict]:
    rng = random.Random(f"digits-{seed}-{split}")
    rows = []
    for index in range(n):
        task = tasks[index % len(tasks)]
        n_digits = rng.randint(1, max_digits)
        first = (index // len(tasks)) % num_classes  # balanced: no answer is more common than chance
        digits = [first] + [rng.randrange(num_classes) for _ in range(n_digits - 1)]
        answer = answer_of(task, digits)
        rows.append({
            "data_source": DATA_SOURCE,
            "prompt": [{"role": "user", "content": TASKS[task]}],
            "images": [{"bytes": render(digits, rng, size)}],
            "ability": "vision",
            "reward_model": {"style": "rule", "ground_truth": answer},
            "extra_info": {"split": split, "index": index, "task": task, "digits": digits, "answer": answer},
        })
    rng.shuffle(rows)
    return rows


def write(save_dir: str, num_train: int = 512, num_test: int = 64, seed: int = 0, image_size: int = 56,
          num_classes: int = 3, max_digits: int = 1, tasks: str = "list,sum") -> dict[str, str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    task_list = tasks.split(",")
    if not set(task_list) <= set(TASKS):
        raise ValueError(f"tasks {task_list}: choose from {sorted(TASKS)}")
    if not 2 <= num_classes <= 10 or not 1 <= max_digits <= 3:
        raise ValueError("num_classes must be 2..10 and max_digits 1..3")
    save = Path(save_dir).expanduser()
    save.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", num_train), ("test", num_test)):
        path = save / f"{split}.parquet"
        rows = make_rows(n, split, seed, image_size, num_classes, max_digits, task_list)
        pq.write_table(pa.Table.from_pylist(rows), path)
        out[split] = str(path)
    return out
