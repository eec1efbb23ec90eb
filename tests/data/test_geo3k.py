"""data_preprocess/geo3k.py on a local copy laid out like the hub dataset; its output loads unchanged."""

import importlib.util
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from verlvl.data.config import DataConfig
from verlvl.data.rl_dataset import RLDataset

REPO = Path(__file__).resolve().parents[2]


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "data_preprocess" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fabricate_hub_copy(root: Path, drop_column: str | None = None) -> Path:
    """hiyouga/geometry3k's layout: data/{train,validation,test}-00000-of-00001.parquet with columns
    images (a list of images), problem (with <image> tags) and answer."""
    import datasets

    features = datasets.Features({"images": datasets.Sequence(datasets.Image()), "problem": datasets.Value("string"),
                                  "answer": datasets.Value("string")})
    (root / "data").mkdir(parents=True)
    for split, n in (("train", 5), ("validation", 2), ("test", 3)):
        rows = {"images": [[Image.new("RGB", (64 + 8 * i, 48), (10 * i, 100, 200))] for i in range(n)],
                "problem": [f"<image>Find x. Round to the nearest tenth, if necessary. ({split} {i})"
                            for i in range(n)],
                "answer": [str(3 + i) for i in range(n)]}
        data = datasets.Dataset.from_dict(rows, features=features)
        if drop_column:
            data = data.remove_columns(drop_column)
        data.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    return root


def test_geo3k_writes_verl_schema_and_it_loads(tmp_path, tiny_vl):
    geo3k = load_script("geo3k")
    source = fabricate_hub_copy(tmp_path / "hub_copy")
    out = geo3k.main(["--local_dataset_path", str(source), "--local_save_dir", str(tmp_path / "out")])
    rows = pq.read_table(out["train"]).to_pylist()
    assert len(rows) == 5 and pq.read_table(out["test"]).num_rows == 3
    row = rows[2]
    assert row["data_source"] == "hiyouga/geometry3k" and row["ability"] == "math"
    assert row["prompt"][0]["role"] == "user" and row["prompt"][0]["content"].count("<image>") == 1
    assert "<think>" in row["prompt"][0]["content"] and "\\boxed{}" in row["prompt"][0]["content"]
    assert row["reward_model"] == {"style": "rule", "ground_truth": "5"}
    assert row["extra_info"]["split"] == "train" and row["extra_info"]["index"] == 2
    assert row["extra_info"]["answer"] == "5" and "Find x" in row["extra_info"]["question"]
    assert isinstance(row["images"][0]["bytes"], bytes)
    processor, _ = tiny_vl
    ds = RLDataset([out["train"], out["test"]], processor.tokenizer, processor, DataConfig(max_prompt_length=256))
    assert len(ds) == 8 and ds[7]["row_origin"].endswith("test.parquet row 2")


def test_geo3k_source_without_expected_columns_is_a_clear_error(tmp_path):
    geo3k = load_script("geo3k")
    source = fabricate_hub_copy(tmp_path / "bad", drop_column="answer")
    with pytest.raises(ValueError, match=r"the train split lacks column\(s\) \['answer'\]"):
        geo3k.main(["--local_dataset_path", str(source), "--local_save_dir", str(tmp_path / "out")])


def test_shapes_task_is_deterministic_and_needs_the_image(tmp_path):
    shapes = load_script("shapes")
    a = shapes.main(["--local_save_dir", str(tmp_path / "a"), "--num_train", "20", "--num_test", "4"])
    b = shapes.main(["--local_save_dir", str(tmp_path / "b"), "--num_train", "20", "--num_test", "4"])
    ta, tb = pq.read_table(a["train"]), pq.read_table(b["train"])
    assert ta.equals(tb)
    rows = ta.to_pylist()
    assert len({r["prompt"][0]["content"] for r in rows}) == 1  # the text never gives the answer away
    answers = [r["reward_model"]["ground_truth"] for r in rows]
    assert sorted(set(answers)) == ["green", "red"] and answers.count("red") == 10
