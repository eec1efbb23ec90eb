"""A synthetic run folder as the trainer writes it: metrics, plots, config, and veRL-style sample dumps."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from PIL import Image

COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 160, 60)}


def _image(folder: Path, colour: str, size=(56, 56)) -> str:
    """Written once under images/<sha1>.png; returns the path relative to the jsonl's folder."""
    buf = io.BytesIO()
    Image.new("RGB", size, COLOURS[colour]).save(buf, format="PNG")
    name = f"images/{hashlib.sha1(buf.getvalue()).hexdigest()}.png"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    if not (folder / name).exists():
        (folder / name).write_bytes(buf.getvalue())
    return name


def make_run_dir(run_dir: Path, steps: int = 4) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "metrics.jsonl", "w") as f:
        for step in range(1, steps + 1):
            row = {"step": step, "critic/score/mean": step / steps, "response_length/mean": 2.0 + step,
                   "actor/entropy": 1.0 / step, "timing_s/step": 0.3, "training/global_step": step}
            if step % 2 == 0:
                row["val-core/shapes/acc/mean@4"] = step / steps
            f.write(json.dumps(row) + "\n")
    (run_dir / "config.yaml").write_text("data:\n  train_files: builtin://shapes/train.parquet\ntrainer:\n"
                                         "  total_training_steps: 4\n  logger: [console, jsonl]\n")
    for split, split_steps in (("val", range(2, steps + 1, 2)), ("train", range(1, steps + 1))):
        folder = run_dir / "samples" / split
        folder.mkdir(parents=True, exist_ok=True)
        for step in split_steps:
            records = []
            for i, colour in enumerate(["red", "blue", "green", "red", "blue", "green"]):
                answer = colour if (i + step // 2) % 2 else "purple"
                records.append({"step": step, "input": f"<|im_start|>user\n<image>What colour is this? ({i})",
                                "output": answer + ("\x06" if i == 0 else ""), "gts": colour, "score": float(answer == colour),
                                "data_source": "shapes", "row": f"test.parquet row {i}",
                                "images": [_image(folder, colour)], "acc": float(answer == colour),
                                "format": 1.0})
            # two images in one prompt, and text that must stay text
            records.append({"step": step, "input": "compare <image> and <image>", "gts": None, "score": 0.5,
                            "output": "</script><b>bold?</b> & <img src=x onerror=alert(1)>",
                            "data_source": "pairs", "row": "pairs.parquet row 0",
                            "images": [_image(folder, "red"), _image(folder, "blue", (40, 80))]})
            (folder / f"{step}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    from verlvl.plot import plot

    plot(run_dir)
    return run_dir
