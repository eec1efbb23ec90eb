"""The built-in tool task: "what colour is the mark in the <corner>?", four small marks, zooming in shows one large.

Each image has a small mark of a different colour near each corner; the question names one corner. The marks are a
few pixels wide, so the answer is read best after calling image_zoom_in_tool on that corner (the tool returns the
crop enlarged). Written in veRL's schema with extra_info.tools_kwargs, and with the tool config beside the data.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

from PIL import Image, ImageDraw

from verlvl.tools.builtin import ZOOM_SCHEMA
from verlvl.tools.prompt import tool_system_prompt

DATA_SOURCE = "verlvl/zoom"
COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30)}
CORNERS = ("top left", "top right", "bottom left", "bottom right")
TOOL_CONFIG = """tools:
  - class_name: verlvl.tools.builtin.ImageZoomInTool
    config: {type: native, output_size: %d}
"""


def render(colors: list[str], rng: random.Random, size: int, mark: int) -> bytes:
    """Marks of `colors` (in CORNERS order), each `mark` pixels wide, somewhere in its corner's quarter."""
    image = Image.new("RGB", (size, size), tuple(rng.randint(225, 255) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    half = size // 2
    for k, color in enumerate(colors):
        x0, y0 = (k % 2) * half, (k // 2) * half
        x, y = x0 + rng.randint(2, half - mark - 2), y0 + rng.randint(2, half - mark - 2)
        draw.rectangle([x, y, x + mark - 1, y + mark - 1], fill=COLORS[color])
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def question(corner: str, size: int) -> str:
    half = size // 2
    x, y = (half if "right" in corner else 0), (half if "bottom" in corner else 0)
    return (f"<image>What colour is the mark in the {corner}? Zoom in on [{x}, {y}, {x + half}, {y + half}] first, "
            "then answer with one word.")


SHORT_SYSTEM = ('You can zoom in: <tool_call>{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [x1, y1, x2, y2]}}'
                '</tool_call>')


def make_rows(n: int, split: str, seed: int, size: int, mark: int, short_prompt: bool = False) -> list[dict]:
    """`short_prompt`: a one-line tool description instead of Qwen's tool system prompt (~800 tokens of the tiny
    model's tokenizer, ~250 of Qwen's)."""
    rng = random.Random(f"{seed}-{split}")
    system = SHORT_SYSTEM if short_prompt else tool_system_prompt([ZOOM_SCHEMA], "You are a helpful assistant.")
    rows = []
    for index in range(n):
        colors = list(COLORS)
        rng.shuffle(colors)
        corner = CORNERS[index % len(CORNERS)]
        answer = colors[CORNERS.index(corner)]
        rows.append({
            "data_source": DATA_SOURCE,
            "prompt": [{"role": "system", "content": system}, {"role": "user", "content": question(corner, size)}],
            "images": [{"bytes": render(colors, rng, size, mark)}],
            "ability": "vision",
            "reward_model": {"style": "rule", "ground_truth": answer},
            "extra_info": {"split": split, "index": index, "answer": answer, "corner": corner,
                           "need_tools_kwargs": True,
                           "tools_kwargs": {"image_zoom_in_tool": {"create_kwargs": {"corner": corner}}}},
        })
    rng.shuffle(rows)
    return rows


def write(save_dir: str, num_train: int = 512, num_test: int = 64, seed: int = 0, image_size: int = 112,
          mark: int = 4, zoom_size: int = 112, short_prompt: bool = False) -> dict[str, str]:
    """train.parquet, test.parquet and tool_config.yaml (for actor_rollout_ref.rollout.multi_turn.tool_config_path)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    save = Path(save_dir).expanduser()
    save.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", num_train), ("test", num_test)):
        path = save / f"{split}.parquet"
        pq.write_table(pa.Table.from_pylist(make_rows(n, split, seed, image_size, mark, short_prompt)), path)
        out[split] = str(path)
    (save / "tool_config.yaml").write_text(TOOL_CONFIG % zoom_size)
    out["tool_config"] = str(save / "tool_config.yaml")
    return out
