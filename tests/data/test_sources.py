"""data.train_files beyond parquet: JSON/JSONL, datasets save_to_disk folders, file folders, name@split hub ids."""

import json
import os
import re
import subprocess
import sys

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from omegaconf import OmegaConf

from tests.data.test_rl_dataset import dataset, png, verl_row
from tests.trainer.helpers import compose_config
from verlvl.data import sources
from verlvl.data.images import DataError
from verlvl.trainer.config import ConfigError, check_config

COLOURS = ["red", "blue", "green"]


def rows():
    return [verl_row(f"<image>What colour? {i}", [png(c)], answer=c, index=i) for i, c in enumerate(COLOURS)]


@pytest.fixture
def parquet(tmp_path):
    path = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows()), path)
    return str(path)


def same_items(a, b):
    assert len(a) == len(b)
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert torch.equal(x["input_ids"], y["input_ids"]) and torch.equal(x["position_ids"], y["position_ids"])
        assert [im.tobytes() for im in x["multi_modal_data"]["image"]] == \
            [im.tobytes() for im in y["multi_modal_data"]["image"]]
        assert x["reward_model"] == y["reward_model"]


def json_rows(folder):
    """EasyR1's JSON form: images as paths relative to the data file."""
    (folder / "images").mkdir(parents=True)
    out = []
    for i, colour in enumerate(COLOURS):
        (folder / "images" / f"{colour}.png").write_bytes(png(colour))
        row = verl_row(f"<image>What colour? {i}", [], answer=colour, index=i)
        row["images"] = [f"images/{colour}.png"]
        out.append(row)
    return out


def test_json_and_jsonl_give_the_parquet_prompts(tiny_vl, parquet, tmp_path, monkeypatch):
    processor, _ = tiny_vl
    reference = dataset([parquet], processor)
    folder = tmp_path / "easyr1"
    data = json_rows(folder)
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    (folder / "train.json").write_text(json.dumps(data, indent=1))
    monkeypatch.chdir(tmp_path)  # image paths resolve against the data file's folder, not the working one
    for name in ("train.jsonl", "train.json"):
        ds = dataset([str(folder / name)], processor)
        same_items(ds, reference)
        assert ds.origin[2] == (str(folder / name), 2)


def test_save_to_disk_dataset_and_dataset_dict(tiny_vl, parquet, tmp_path):
    processor, _ = tiny_vl
    reference = dataset([parquet], processor)
    features = datasets.Dataset.from_parquet(parquet).features.copy()
    features["images"] = datasets.List(datasets.Image())  # as hub datasets keep images
    ds = datasets.Dataset.from_parquet(parquet).cast(features)
    ds.save_to_disk(str(tmp_path / "one"))
    same_items(dataset([str(tmp_path / "one")], processor), reference)

    datasets.DatasetDict({"train": ds, "test": ds.select([2, 0])}).save_to_disk(str(tmp_path / "dict"))
    same_items(dataset([f"{tmp_path / 'dict'}@train"], processor), reference)
    test = dataset([f"{tmp_path / 'dict'}@test"], processor)
    assert len(test) == 2 and test.origin[0] == (f"{tmp_path / 'dict'}@test", 0)
    with pytest.raises(DataError, match=r"a DatasetDict with the splits \['train', 'test'\]: pick one as .*dict@train"):
        dataset([str(tmp_path / "dict")], processor)
    with pytest.raises(DataError, match=r"dict@valid: no split 'valid' \(the folder has \['train', 'test'\]\)"):
        dataset([f"{tmp_path / 'dict'}@valid"], processor)


def test_folder_of_files_as_a_hub_clone_lays_them_out(tiny_vl, parquet, tmp_path):
    processor, _ = tiny_vl
    reference = dataset([parquet], processor)
    clone = tmp_path / "geometry3k"
    (clone / "data").mkdir(parents=True)
    table = pa.Table.from_pylist(rows())
    pq.write_table(table.slice(0, 2), clone / "data" / "train-00000-of-00002.parquet")
    pq.write_table(table.slice(2), clone / "data" / "train-00001-of-00002.parquet")
    pq.write_table(table.slice(0, 1), clone / "data" / "test-00000-of-00001.parquet")
    (clone / "README.md").write_text("# dataset card")
    same_items(dataset([f"{clone}@train"], processor), reference)
    assert len(dataset([f"{clone}@test"], processor)) == 1
    with pytest.raises(DataError, match=r"holds the splits \['test', 'train'\]: pick one as .*geometry3k@test"):
        dataset([str(clone)], processor)


def test_hub_id_without_hub_access_is_a_clear_error(tmp_path):
    # a fresh process: huggingface_hub reads HF_HUB_OFFLINE when imported
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    code = "from verlvl.data.sources import read_source; read_source('hiyouga/geometry3k@train')"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert re.search(r"DataError: hiyouga/geometry3k@train: could not load split 'train' of the hub dataset "
                     r"'hiyouga/geometry3k' .*Without hub access, save it elsewhere", done.stderr), done.stderr[-2000:]


def test_load_time_checks_are_the_parquet_ones(tiny_vl, tmp_path):
    processor, _ = tiny_vl
    bad = tmp_path / "bad.jsonl"
    row = verl_row("<image><image>two tags", [], index=0)
    row["images"] = [str(tmp_path / "a.png")]
    (tmp_path / "a.png").write_bytes(png())
    bad.write_text(json.dumps(verl_row("fine", [])) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl row 1: the prompt has 2 <image> tag\(s\) but column 'images' "
                                        r"holds 1 image\(s\)"):
        dataset([str(bad)], processor)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(verl_row("fine", [])) + "\n{\"prompt\": \n")
    with pytest.raises(DataError, match=r"broken\.jsonl line 2: not valid JSON"):
        dataset([str(broken)], processor)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"notes\.txt: unknown data file type \.txt"):
        dataset([str(tmp_path / "notes.txt")], processor)
    with pytest.raises(DataError, match=r"empty: the folder holds no \.parquet/\.json/\.jsonl files"):
        (tmp_path / "empty").mkdir()
        dataset([str(tmp_path / "empty")], processor)


def test_config_check_accepts_folders_and_hub_ids_and_names_missing_paths(parquet, tmp_path):
    assert sources.exists(parquet) and sources.exists(str(tmp_path)) and sources.exists("hiyouga/geometry3k@train")
    assert not sources.exists(str(tmp_path / "nope.parquet")) and not sources.exists(f"{tmp_path}/nope@train")
    ok = OmegaConf.to_container(compose_config(f"data.train_files={tmp_path}",
                                               "data.val_files=[hiyouga/geometry3k@test]"), resolve=True)
    derived = check_config(ok, resolve_builtins=False)
    assert derived.train_files == (str(tmp_path),) and derived.val_files == ("hiyouga/geometry3k@test",)
    bad = OmegaConf.to_container(compose_config(f"data.train_files={tmp_path}/nope@train"), resolve=True)
    with pytest.raises(ConfigError, match=r"data.train_files: .*nope@train does not exist"):
        check_config(bad, resolve_builtins=False)
