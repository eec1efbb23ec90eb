"""Write hiyouga/geometry3k as train/test parquet in veRL's RL schema (images as bytes, <image> tags)."""

from __future__ import annotations

import argparse
import io
import os
import re
from pathlib import Path

DATA_SOURCE = "hiyouga/geometry3k"
INSTRUCTION = (
    r"You FIRST think about the reasoning process as an internal monologue and then provide the final answer. "
    r"The reasoning process MUST BE enclosed within <think> </think> tags. The final answer MUST BE put in \boxed{}."
)
REQUIRED_COLUMNS = ("problem", "answer", "images")


def image_to_bytes(image) -> dict:
    """{'bytes': PNG/JPEG bytes} from a PIL image or a datasets image cell."""
    if isinstance(image, dict) and image.get("bytes") is not None:
        return {"bytes": image["bytes"]}
    if isinstance(image, dict) and image.get("path"):
        return {"bytes": Path(image["path"]).read_bytes()}
    buf = io.BytesIO()
    fmt = image.format if getattr(image, "format", None) in ("PNG", "JPEG") else "PNG"
    image.save(buf, format=fmt)
    return {"bytes": buf.getvalue()}


def with_one_tag_per_image(problem: str, n_images: int, where: str) -> str:
    n_tags = problem.count("<image>")
    if n_tags == n_images:
        return problem
    if n_tags == 0:
        return "<image>" * n_images + problem
    raise ValueError(f"{where}: the problem has {n_tags} <image> tags but {n_images} images")


def make_row(example: dict, index: int, split: str) -> dict:
    problem = example["problem"]
    images = list(example["images"] or [])
    problem = with_one_tag_per_image(problem, len(images), f"{split} example {index}")
    answer = str(example["answer"])
    return {
        "data_source": DATA_SOURCE,
        "prompt": [{"role": "user", "content": problem + " " + INSTRUCTION}],
        "images": [image_to_bytes(img) for img in images],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": answer},
        "extra_info": {"split": split, "index": index, "answer": answer, "question": re.sub(r"<image>", "", problem)},
    }


def load_source(local_dataset_path: str | None):
    import datasets

    if local_dataset_path:
        path = Path(local_dataset_path).expanduser()
        if (path / "dataset_dict.json").exists():
            return datasets.load_from_disk(str(path))
        return datasets.load_dataset(str(path))
    return datasets.load_dataset(DATA_SOURCE)


def convert(source, save_dir: str) -> dict[str, str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = {}
    save = Path(save_dir).expanduser()
    save.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        if split not in source:
            raise ValueError(f"the source has no {split!r} split (it has {list(source)}); geo3k needs train and test")
        data = source[split]
        missing = [c for c in REQUIRED_COLUMNS if c not in data.column_names]
        if missing:
            raise ValueError(f"the {split} split lacks column(s) {missing}; it has {data.column_names}. Expected "
                             f"the layout of {DATA_SOURCE} (problem, answer, images)")
        rows = [make_row(example, i, split) for i, example in enumerate(data)]
        path = save / f"{split}.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
        out[split] = str(path)
        print(f"wrote {len(rows)} rows to {path}")
    return out


def main(argv=None) -> dict[str, str]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--local_dataset_path", default=None,
                        help="a local copy (saved dataset folder or folder of parquet files) instead of the hub")
    parser.add_argument("--local_save_dir", default=os.path.join("~", "data", "geo3k"),
                        help="where train.parquet and test.parquet go")
    parser.add_argument("--local_dir", default=None, help=argparse.SUPPRESS)  # veRL's older name
    args = parser.parse_args(argv)
    return convert(load_source(args.local_dataset_path), args.local_dir or args.local_save_dir)


if __name__ == "__main__":
    main()
