"""Small copies of each recipe's source data in its hub layout, converted by its data_preprocess script."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from tests.data.test_geo3k import load_script
from tests.data.test_user_datasets import hub_parquet, message, vermulti_geo_files


def convert(script: str, source: Path, out: Path, *extra: str) -> dict:
    return load_script(script).main(["--local_dataset_path", str(source), "--local_save_dir", str(out), *extra])


def gsm8k(root: Path, n: int = 6) -> dict:
    source = hub_parquet(root / "gsm8k", "main", {
        split: {"question": [f"What is {k} + {k}?" for k in range(n)],
                "answer": [f"{k} + {k} = {2 * k}\n#### {2 * k}" for k in range(n)]} for split in ("train", "test")})
    return convert("gsm8k", source, root / "data")


def scienceqa(root: Path, n: int = 4) -> dict:
    import datasets

    features = datasets.Features({
        "image": datasets.Image(), "question": datasets.Value("string"),
        "choices": datasets.Sequence(datasets.Value("string")), "answer": datasets.Value("int8"),
        "hint": datasets.Value("string"), "subject": datasets.Value("string"), "grade": datasets.Value("string")})
    split = {"image": [Image.new("RGB", (40, 30), (0, 90, 200)) if k % 2 == 0 else None for k in range(n)],
             "question": [f"Which one {k}?" for k in range(n)], "choices": [["cat", "dog", "fish"]] * n,
             "answer": [k % 3 for k in range(n)], "hint": [""] * n, "subject": ["natural science"] * n,
             "grade": ["grade3"] * n}
    source = hub_parquet(root / "sqa", "data", {s: split for s in ("train", "validation", "test")}, features)
    return convert("scienceqa", source, root / "data")


def digits(root: Path) -> dict:
    import datasets

    def split(labels):
        return datasets.Dataset.from_dict({"image": [Image.new("L", (28 * len(lab), 28), 255) for lab in labels],
                                           "label": labels})
    datasets.DatasetDict({"digits_1": split([[7], [3]]), "digits_2": split([[5, 1], [2, 2]]),
                          "digits_3": split([[9, 0, 4]])}).save_to_disk(str(root / "dr"))
    return convert("digits", root / "dr", root / "data", "--test_size", "1")


def deepscaler(root: Path, n: int = 6) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    lines = [{"message": message([{"type": "text", "text": f"What is {k}+{k}?"}]), "answer": f"${2 * k}$"}
             for k in range(n)]
    (root / "deepscaler_message.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    return convert("deepscaler", root, root / "data", "--test_size", "2")


def vermulti_geo(root: Path, n: int = 6) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    vermulti_geo_files(root, images=n, rows=n)
    return convert("vermulti", root, root / "data", "--subset", "geo", "--test_size", "2")
