"""The built-in image task: "what colour is the shape?" on rendered images, written in veRL's schema.

The answer can only be read from the image (the prompt is identical for every row). Deterministic from
the seed. Sized so a tiny Qwen-VL trained from scratch by RL on CPU visibly improves within minutes.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

from PIL import Image, ImageDraw

DATA_SOURCE = "verlvl/shapes"
COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30),
          "purple": (140, 60, 180), "orange": (240, 130, 20)}
SHAPES = ("square", "circle", "triangle")
QUESTION = "<image>What colour is the shape? Answer with one word."


def render(color: str, shape: str, rng: random.Random, size: int) -> bytes:
    """A large filled shape of `color` on a light background, at a random place and scale."""
    background = tuple(rng.randint(225, 255) for _ in range(3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    side = rng.randint(int(size * 0.6), int(size * 0.9))
    x, y = rng.randint(0, size - side), rng.randint(0, size - side)
    fill = COLORS[color]
    if shape == "square":
        draw.rectangle([x, y, x + side, y + side], fill=fill)
    elif shape == "circle":
        draw.ellipse([x, y, x + side, y + side], fill=fill)
    else:
        draw.polygon([(x + side / 2, y), (x, y + side), (x + side, y + side)], fill=fill)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def make_rows(n: int, split: str, colors: list[str], seed: int, size: int) -> list[dict]:
    rng = random.Random(f"{seed}-{split}")
    rows = []
    for index in range(n):
        color, shape = colors[index % len(colors)], rng.choice(SHAPES)  # balanced classes
        rows.append({
            "data_source": DATA_SOURCE,
            "prompt": [{"role": "user", "content": QUESTION}],
            "images": [{"bytes": render(color, shape, rng, size)}],
            "ability": "vision",
            "reward_model": {"style": "rule", "ground_truth": color},
            "extra_info": {"split": split, "index": index, "answer": color, "shape": shape,
                           "choices": list(colors)},
        })
    rng.shuffle(rows)
    return rows


def write(save_dir: str, num_train: int = 512, num_test: int = 64, num_colors: int = 2, seed: int = 0,
          image_size: int = 56) -> dict[str, str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not 2 <= num_colors <= len(COLORS):
        raise ValueError(f"--num_colors must be between 2 and {len(COLORS)}")
    colors = list(COLORS)[:num_colors]
    save = Path(save_dir).expanduser()
    save.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", num_train), ("test", num_test)):
        path = save / f"{split}.parquet"
        pq.write_table(pa.Table.from_pylist(make_rows(n, split, colors, seed, image_size)), path)
        out[split] = str(path)
    return out
