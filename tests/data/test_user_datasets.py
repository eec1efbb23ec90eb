"""data_preprocess scripts for dmmrl's, r1_vlm's and LMM-R1's datasets, each on a tiny local copy built in the
source's own layout; rows they cannot convert are reported by index and counted, and the output loads."""

import io
import json
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.data.test_geo3k import load_script
from verlvl.data.config import DataConfig
from verlvl.data.rl_dataset import RLDataset


def png(color=(200, 30, 30), size=(32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def rows_of(path):
    return pq.read_table(path).to_pylist()


def assert_verl_schema(row, data_source):
    assert row["data_source"] == data_source
    assert [m["role"] for m in row["prompt"]][-1] == "user"
    assert row["reward_model"]["style"] == "rule" and row["reward_model"]["ground_truth"]
    assert {"split", "index"} <= set(row["extra_info"])
    if "images" in row:
        assert sum(m["content"].count("<image>") for m in row["prompt"]) == len(row["images"])
        assert all(isinstance(img["bytes"], bytes) for img in row["images"])


def loads(files, tiny_vl, n):
    processor, _ = tiny_vl
    ds = RLDataset(files, processor.tokenizer, processor, DataConfig(max_prompt_length=1024))
    assert len(ds) == n


def hub_parquet(root: Path, folder: str, splits: dict, features=None):
    import datasets

    (root / folder).mkdir(parents=True, exist_ok=True)
    for split, columns in splits.items():
        datasets.Dataset.from_dict(columns, features=features).to_parquet(
            str(root / folder / f"{split}-00000-of-00001.parquet"))
    return root


# ---------------------------------------------------------------------------------------------- dmmrl
def test_gsm8k_answer_after_hashes_and_a_bad_row_is_reported(tmp_path, capsys, tiny_vl):
    """openai/gsm8k's repo layout: main/{train,test}-00000-of-00001.parquet with question and answer."""
    answers = ["She has 3 + 4 = 7 apples.\n#### 7", "Total 1,200 + 34 = 1,234\n#### 1,234", "no final line"]
    source = hub_parquet(tmp_path / "gsm8k", "main", {
        "train": {"question": ["Q0?", "Q1?", "Q2?"], "answer": answers},
        "test": {"question": ["T0?"], "answer": ["#### -5"]}})
    out = load_script("gsm8k").main(["--local_dataset_path", str(source), "--local_save_dir", str(tmp_path / "o")])
    train = rows_of(out["train"])
    assert [r["reward_model"]["ground_truth"] for r in train] == ["7", "1234"]
    assert_verl_schema(train[1], "openai/gsm8k")
    assert "images" not in train[0] and train[1]["prompt"][0]["content"].startswith("Q1? Let's think step by step")
    assert rows_of(out["test"])[0]["reward_model"]["ground_truth"] == "-5"
    printed = capsys.readouterr().out
    assert "skipped train row 2: no '#### <number>' in the answer" in printed
    assert "1  no '#### <number>' in the answer" in printed
    skipped = json.loads((tmp_path / "o" / "skipped.json").read_text())
    assert skipped["no '#### <number>' in the answer"][0]["index"] == 2
    loads([out["train"], out["test"]], tiny_vl, 3)


def math_copy(root: Path) -> Path:
    """DigitalLearningGmbH/MATH-lighteval as save_to_disk: problem, level, type, solution."""
    import datasets

    def split(levels):
        return datasets.Dataset.from_dict({
            "problem": [f"P{k}" for k in range(len(levels))], "level": levels,
            "type": ["Algebra"] * len(levels),
            "solution": [f"so $x=\\boxed{{\\frac{{{k}}}{{2}}}}$" if k != 1 else "no box" for k in range(len(levels))]})
    datasets.DatasetDict({"train": split(["Level 1", "Level 3", "Level 5", "Level ?"]),
                          "test": split(["Level 4", "Level 2"])}).save_to_disk(str(root))
    return root


def test_math_lighteval_boxed_answers_and_levels(tmp_path, capsys):
    source = math_copy(tmp_path / "math")
    out = load_script("math_lighteval").main(["--local_dataset_path", str(source), "--local_save_dir",
                                              str(tmp_path / "o")])
    train = rows_of(out["train"])
    assert [r["extra_info"]["index"] for r in train] == [0, 2, 3]  # row 1 has no \boxed{}
    assert train[1]["reward_model"]["ground_truth"] == "\\frac{2}{2}" and train[1]["extra_info"]["level"] == 5
    assert train[2]["extra_info"]["level"] is None
    assert_verl_schema(train[0], "DigitalLearningGmbH/MATH-lighteval")
    assert "skipped train row 1: no \\boxed{} answer in the solution" in capsys.readouterr().out


def test_scienceqa_letters_optional_image_and_hint(tmp_path, tiny_vl):
    """derek-thomas/ScienceQA's layout: data/{train,validation,test}-*.parquet, image may be None."""
    import datasets

    features = datasets.Features({
        "image": datasets.Image(), "question": datasets.Value("string"),
        "choices": datasets.Sequence(datasets.Value("string")), "answer": datasets.Value("int8"),
        "hint": datasets.Value("string"), "subject": datasets.Value("string"), "grade": datasets.Value("string")})

    def split(n):
        return {"image": [Image.new("RGB", (40, 30), (0, 90, 200)) if k % 2 == 0 else None for k in range(n)],
                "question": [f"Which one {k}?" for k in range(n)], "choices": [["cat", "dog", "fish"]] * n,
                "answer": [k % 3 for k in range(n)], "hint": ["Look closely." if k == 0 else "" for k in range(n)],
                "subject": ["natural science"] * n, "grade": ["grade3"] * n}
    train = split(4)
    train["answer"][3] = 5  # outside the choices
    source = hub_parquet(tmp_path / "sqa", "data", {"train": train, "validation": split(1), "test": split(2)},
                         features)
    out = load_script("scienceqa").main(["--local_dataset_path", str(source), "--local_save_dir", str(tmp_path / "o")])
    rows = rows_of(out["train"])
    assert [r["reward_model"]["ground_truth"] for r in rows] == ["A", "B", "C"]
    assert [len(r["images"]) for r in rows] == [1, 0, 1]
    user = rows[0]["prompt"][1]["content"]
    assert user.startswith("<image>Context: Look closely.\nWhich one 0?") and "(B) dog" in user and "\\boxed" in user
    assert rows[0]["prompt"][0]["role"] == "system" and "<think>" in rows[0]["prompt"][0]["content"]
    assert rows[0]["extra_info"]["subject"] == "natural science"
    assert_verl_schema(rows[1], "derek-thomas/ScienceQA")
    assert sorted(out) == ["test", "train", "validation"]
    loads(out["train"], tiny_vl, 3)


def test_mmmu_placeholders_become_tags_in_order(tmp_path, capsys, tiny_vl):
    """lmms-lab/MMMU's validation split: image_1..image_7, options as a list literal, <image N> in text."""
    import datasets

    n = 3
    cols = {"id": [f"validation_Art_{k}" for k in range(n)],
            "question": ["Compare <image 2> with <image 1>.", "What is shown in <image 1>?", "See <image 3>."],
            "options": ["['<image 1>', 'neither']", "[]", "['x', 'y']"],
            "explanation": [""] * n, "answer": ["B", "12.5", "A"],
            "question_type": ["multiple-choice", "open", "multiple-choice"],
            "subfield": ["Art"] * n, "img_type": ["['Paintings']"] * n, "topic_difficulty": ["Easy"] * n}
    reds = {k: Image.new("RGB", (30 + 10 * k, 30), (40 * k, 0, 0)) for k in range(1, 8)}
    for k in range(1, 8):
        cols[f"image_{k}"] = [reds[k] if k <= 2 else None for _ in range(n)]
    features = datasets.Features({**{c: datasets.Value("string") for c in cols if not c.startswith("image_")},
                                  **{f"image_{k}": datasets.Image() for k in range(1, 8)}})
    validation = datasets.Dataset.from_dict(cols, features=features)
    datasets.DatasetDict({"validation": validation}).save_to_disk(str(tmp_path / "mmmu"))
    validation.to_parquet(str(tmp_path / "validation-00000-of-00001.parquet"))
    out = load_script("mmmu").main(["--local_dataset_path", str(tmp_path / "mmmu"), "--local_save_dir",
                                    str(tmp_path / "o")])
    rows = rows_of(out["validation"])
    assert len(rows) == 2 and "skipped validation row 2: placeholder without its image" in capsys.readouterr().out
    first = rows[0]
    assert first["prompt"][1]["content"].startswith("Compare <image> with <image>.")
    assert "(A) <image>\n(B) neither" in first["prompt"][1]["content"]
    sizes = [Image.open(io.BytesIO(img["bytes"])).size for img in first["images"]]
    assert sizes == [(50, 30), (40, 30), (40, 30)]  # image 2, image 1, then image 1 again for option A
    assert first["reward_model"]["ground_truth"] == "B" and rows[1]["extra_info"]["question_type"] == "open"
    assert_verl_schema(first, "lmms-lab/MMMU")
    loads(out["validation"], tiny_vl, 2)
    lone = load_script("mmmu").main(["--local_dataset_path", str(tmp_path / "validation-00000-of-00001.parquet"),
                                     "--local_save_dir", str(tmp_path / "o2")])  # one parquet file: that split
    assert rows_of(lone["validation"]) == rows


# ---------------------------------------------------------------------------------------------- r1_vlm
def test_digits_two_tasks_per_image_and_a_held_out_test(tmp_path, capsys, tiny_vl):
    """sunildkumar/digit-recognition: splits digits_1..digits_3 with image and label (a list of digits)."""
    import datasets

    def split(labels):
        return datasets.Dataset.from_dict({"image": [Image.new("L", (28 * len(lab), 28), 0) for lab in labels],
                                           "label": labels})
    datasets.DatasetDict({"digits_1": split([[7], [3], [0]]), "digits_2": split([[5, 1], [2, 2]]),
                          "digits_3": split([[9, 0, 4], [1, 2, 3, 4]])}).save_to_disk(str(tmp_path / "dr"))
    out = load_script("digits").main(["--local_dataset_path", str(tmp_path / "dr"), "--local_save_dir",
                                      str(tmp_path / "o"), "--test_size", "2"])
    train, test = rows_of(out["train"]), rows_of(out["test"])
    assert len(train) + len(test) == 12 and len(test) == 4  # 6 good images x 2 tasks; 2 images held out
    assert "label is not a list of 1-3 digits" in capsys.readouterr().out
    by_label = {(tuple(r["extra_info"]["label"]), r["extra_info"]["task"]): r for r in train + test}
    assert by_label[((9, 0, 4), "recognition")]["reward_model"]["ground_truth"] == "[0, 4, 9]"
    assert by_label[((9, 0, 4), "addition")]["reward_model"]["ground_truth"] == "13"
    row = by_label[((5, 1), "recognition")]
    assert row["prompt"][1]["content"].startswith("<image>What digits are in this image?")
    assert "<answer> [1, 2, 3] </answer>" in row["prompt"][1]["content"]
    assert_verl_schema(row, "sunildkumar/digit-recognition")
    held_out = {tuple(r["extra_info"]["label"]) for r in test}
    assert held_out.isdisjoint({tuple(r["extra_info"]["label"]) for r in train})  # both tasks on one side
    loads(out["test"], tiny_vl, 4)


# ---------------------------------------------------------------------------------------------- LMM-R1
def message(user_content, system="Put reasoning in <think> </think> and the answer in <answer> </answer>."):
    return json.dumps([{"role": "system", "content": system}, {"role": "user", "content": user_content}])


def test_deepscaler_messages_text_only(tmp_path, capsys, tiny_vl):
    lines = [{"message": message([{"type": "text", "text": f"What is {k}+{k}?"}]), "answer": f"${2 * k}$"}
             for k in range(6)]
    lines[2]["message"] = "[{not json"
    lines[4]["answer"] = ""
    path = tmp_path / "deepscaler_message.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines))
    out = load_script("deepscaler").main(["--local_dataset_path", str(tmp_path), "--local_save_dir",
                                          str(tmp_path / "o"), "--test_size", "1"])
    rows = rows_of(out["train"]) + rows_of(out["test"])
    assert sorted(r["extra_info"]["index"] for r in rows) == [0, 1, 3, 5]
    row = next(r for r in rows if r["extra_info"]["index"] == 3)
    assert row["prompt"] == [{"role": "system", "content": json.loads(lines[3]["message"])[0]["content"]},
                             {"role": "user", "content": "What is 3+3?"}]
    assert row["reward_model"]["ground_truth"] == "$6$" and "images" not in row
    assert_verl_schema(row, "VLM-Reasoner/deepscaler")
    printed = capsys.readouterr().out
    assert "message is not valid JSON" in printed and "no answer" in printed
    loads([out["train"], out["test"]], tiny_vl, 4)


def vermulti_geo_files(root, images: int, rows: int) -> None:
    """VerMulti's geometry subset as the hub repo has it: mathv_geo_message.jsonl and mathv_geo_img.tar.gz
    (rows past `images` name an image the tarball lacks)."""
    with tarfile.open(root / "mathv_geo_img.tar.gz", "w:gz") as tar:
        for k in range(images):
            data = png((0, 100 + k, 0), (30 + k, 20))
            info = tarfile.TarInfo(f"mathv_geo_img/{k}.png")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    geo = [{"message": message([{"type": "image", "image": f"file:///data/lmm-r1/mathv_geo_img/{k}.png"},
                                {"type": "text", "text": f"Find angle {k}."}]), "answer": f"${30 + k}$"}
           for k in range(rows)]
    (root / "mathv_geo_message.jsonl").write_text("\n".join(json.dumps(g) for g in geo))


def test_vermulti_geo_subset_reads_images_from_the_tarball(tmp_path, capsys, tiny_vl):
    """VLM-Reasoner/VerMulti's files: mathv_geo_message.jsonl (+ mathv_geo_img.tar.gz) beside the full set."""
    vermulti_geo_files(tmp_path, images=2, rows=3)  # image 2 is missing
    (tmp_path / "mathv60k_message.jsonl").write_text(json.dumps({"message": message("x"), "answer": "1"}))
    out = load_script("vermulti").main(["--local_dataset_path", str(tmp_path), "--subset", "geo",
                                        "--local_save_dir", str(tmp_path / "o"), "--test_size", "0"])
    rows = rows_of(out["train"])
    assert "test" not in out and [r["extra_info"]["index"] for r in rows] == [0, 1]
    assert rows[1]["prompt"][1]["content"] == "<image>Find angle 1."
    assert Image.open(io.BytesIO(rows[1]["images"][0]["bytes"])).size == (31, 20)
    assert_verl_schema(rows[0], "VLM-Reasoner/VerMulti")
    assert "skipped train row 2: image file not found" in capsys.readouterr().out
    loads(out["train"], tiny_vl, 2)


def test_math_level345_from_math_and_from_lmm_r1_json(tmp_path):
    out = load_script("math_level345").main(["--local_dataset_path", str(math_copy(tmp_path / "math")),
                                             "--local_save_dir", str(tmp_path / "a")])
    train = rows_of(out["train"])
    assert [r["extra_info"]["level"] for r in train] == [5] and rows_of(out["test"])[0]["extra_info"]["level"] == 4
    assert train[0]["data_source"] == "lmm_r1/math_level345" and train[0]["prompt"][0]["role"] == "system"
    chatml = tmp_path / "mathlv345_8k_chatml.json"
    chatml.write_text(json.dumps([{"message": message("Solve x+1=2."), "answer": "$1$"}] * 3))
    out = load_script("math_level345").main(["--local_dataset_path", str(chatml), "--local_save_dir",
                                             str(tmp_path / "b"), "--test_size", "1"])
    assert len(rows_of(out["train"])) == 2 and rows_of(out["test"])[0]["prompt"][1]["content"] == "Solve x+1=2."


def test_a_copy_in_the_wrong_layout_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q"}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad.jsonl line 2: not valid JSON"):
        load_script("deepscaler").main(["--local_dataset_path", str(bad), "--local_save_dir", str(tmp_path / "o")])
    bad.write_text('{"question": "q"}\n')
    with pytest.raises(ValueError, match=r"the train split lacks column\(s\) \['message', 'answer'\]"):
        load_script("deepscaler").main(["--local_dataset_path", str(bad), "--local_save_dir", str(tmp_path / "o")])
