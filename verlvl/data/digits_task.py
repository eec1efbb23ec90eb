"""The built-in digits task: digits drawn with PIL, "list them from lowest to highest" or "sum them", veRL's schema.

r1_vlm's digit-recognition task made on the fly: 1..max_digits digits from 0..num_classes-1 per image
(first digits balanced across classes), the answer readable only from the image (the prompt is one of two
fixed strings). The list answer is the sorted digits separated by spaces ('1 3'), the sum answer a number.
Deterministic from the seed; scored by verlvl/reward/scorers/digits.py (data_source verlvl/digits).

Measured with tests/bench/bench_digits_learning.py (CPU demo preset, GRPO n=8, 2 shared cores): unlike
the shapes task, the built-in tiny model (random init, 1-layer 64-wide vision tower) does NOT learn it in
300-400 steps (3-7 min): held-out greedy accuracy settles on one constant digit (3 classes: 0.31-0.34
vs the best constant's 0.34, also with fixed black-on-white glyphs; 2 classes at 56 and 112 px: 0.50 =
the constant), training reward flat at chance after step ~90. At initialisation the classes' last
hidden states lie ~0.46 apart against ~0.6 of within-class spread (shapes: ~1.19 against ~0.9).
Use it as a pipeline check (r1_vlm's schema and scorer on CPU), not as a learning demonstration.
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
