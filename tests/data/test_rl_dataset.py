"""RLDataset: both prompt views, exact agreement with the processor and model, every bad input, resume."""

import io
import logging

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from verlvl.data.collate import collate_fn, collate_to_dataproto
from verlvl.data.config import DataConfig
from verlvl.data.images import DataError
from verlvl.data.loader import ResumableLoader
from verlvl.data.rl_dataset import RLDataset
from verlvl.models.vision_inputs import image_inputs


def png(color="red", size=(56, 56)):
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def verl_row(content, images, answer="1", index=0):
    """A row exactly as veRL's geo3k.py writes it (datasets stores images as {'bytes', 'path'})."""
    return {"data_source": "hiyouga/geometry3k", "prompt": [{"content": content, "role": "user"}],
            "images": [{"bytes": b, "path": None} for b in images], "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": answer},
            "extra_info": {"answer": answer, "split": "train", "index": index}}


def write(tmp_path, rows, name="data.parquet"):
    path = tmp_path / name
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def dataset(files, processor, **cfg):
    return RLDataset(files, processor.tokenizer, processor, DataConfig(**{"max_prompt_length": 96, **cfg}))


# ---------------------------------------------------------------- the two views
def test_trainer_view_gives_the_logits_of_processor_and_model(tiny_vl, shapes_files):
    processor, model = tiny_vl
    ds = dataset([shapes_files["train"]], processor)
    row = ds[0]
    images = row["multi_modal_data"]["image"]
    pixels = image_inputs(processor, images, row["multi_modal_inputs"]["image_grid_thw"])
    text = processor.apply_chat_template(ds.plan(ds.indices[0]).messages, add_generation_prompt=True, tokenize=False)
    reference_inputs = processor(text=[text], images=images, return_tensors="pt")
    n = reference_inputs["input_ids"].shape[1]
    assert torch.equal(row["input_ids"][-n:], reference_inputs["input_ids"][0])
    assert row["attention_mask"].sum() == n and not row["attention_mask"][:-n].any()  # left padded
    with torch.no_grad():
        ours = model(input_ids=row["input_ids"][None], attention_mask=row["attention_mask"][None],
                     position_ids=row["position_ids"][:, None], **pixels).logits[0, -n:]
        reference = model(**reference_inputs).logits[0]
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)
    expected, _ = model.model.get_rope_index(row["input_ids"][None], (row["input_ids"][None] ==
                                             processor.image_token_id).int(),
                                             image_grid_thw=pixels["image_grid_thw"],
                                             attention_mask=row["attention_mask"][None])
    assert torch.equal(row["position_ids"], expected[:, 0])


def test_engine_view_has_one_placeholder_per_image(tiny_vl, tmp_path):
    processor, _ = tiny_vl
    file = write(tmp_path, [verl_row("<image>left <image>right", [png("red"), png("blue", (84, 56))])])
    row = dataset([file], processor)[0]
    pad_id = processor.image_token_id
    assert row["raw_prompt_ids"].count(pad_id) == 2
    expanded = row["input_ids"][row["attention_mask"].bool()].tolist()
    grid = row["multi_modal_inputs"]["image_grid_thw"]
    assert expanded.count(pad_id) == int((grid.prod(-1) // 4).sum())
    # outside the placeholders the two views are the same tokens
    assert [t for t in expanded if t != pad_id] == [t for t in row["raw_prompt_ids"] if t != pad_id]


def test_verl_schema_and_text_rows_beside_image_rows(tiny_vl, tmp_path):
    processor, _ = tiny_vl
    file = write(tmp_path, [verl_row("<image>Find x.", [png()], "11", 0), verl_row("What is 2+2?", [], "4", 1),
                            verl_row("<image>and <image>", [png(), png("green")], "2", 2)])
    ds = dataset([file], processor, return_raw_chat=True)
    batch = collate_to_dataproto([ds[i] for i in range(3)])
    assert len(batch) == 3 and batch.batch["position_ids"].shape == (3, 3, 96)
    assert [len(m["image"]) for m in batch.non_tensor_batch["multi_modal_data"]] == [1, 0, 2]
    assert batch.non_tensor_batch["reward_model"][1]["ground_truth"] == "4"
    assert batch.non_tensor_batch["raw_prompt"][0][0]["content"][0] == {"type": "image"}
    text_row = ds[1]
    n = int(text_row["attention_mask"].sum())
    assert torch.equal(text_row["position_ids"][:, -n:], torch.arange(n).expand(3, -1))  # plain 1-D positions


def test_min_max_pixels_resize_keeps_aspect_ratio(tiny_vl, tmp_path):
    processor, _ = tiny_vl
    file = write(tmp_path, [verl_row("<image>big", [png("red", (400, 200))]), verl_row("<image>small",
                                                                                    [png("red", (20, 10))])])
    ds = dataset([file], processor, max_pixels=100 * 50, min_pixels=40 * 20, max_prompt_length=128)
    big, small = ds[0]["multi_modal_data"]["image"][0], ds[1]["multi_modal_data"]["image"][0]
    assert big.size[0] * big.size[1] <= 100 * 50 and abs(big.size[0] / big.size[1] - 2) < 0.05
    assert small.size[0] * small.size[1] >= 40 * 20 and abs(small.size[0] / small.size[1] - 2) < 0.1


# ---------------------------------------------------------------- bad input
def test_corrupt_image_bytes_name_file_and_row(tiny_vl, tmp_path):
    processor, _ = tiny_vl
    garbage = write(tmp_path, [verl_row("<image>ok", [png()]), verl_row("<image>bad", [b"not an image"])], "g.parquet")
    with pytest.raises(DataError, match=r"g\.parquet row 1 image 0: cannot read the image"):
        dataset([garbage], processor)
    cut = write(tmp_path, [verl_row("<image>truncated", [png()[:60]])], "t.parquet")  # header fine, body cut
    ds = dataset([cut], processor)
    with pytest.raises(DataError, match=r"t\.parquet row 0 image 0: the image bytes are corrupt or truncated"):
        ds[0]


def test_tag_image_mismatch(tiny_vl, tmp_path):
    processor, _ = tiny_vl
    file = write(tmp_path, [verl_row("<image>one tag", [png(), png()])], "m.parquet")
    with pytest.raises(DataError, match=r"m\.parquet row 0: the prompt has 1 <image> tag\(s\) but column 'images' "
                                        r"holds 2 image\(s\)"):
        dataset([file], processor)


def test_missing_column_and_missing_or_empty_file(tiny_vl, tmp_path):
    processor, _ = tiny_vl
    file = write(tmp_path, [verl_row("hi", [])])
    with pytest.raises(DataError, match=r"no column 'question' \(data.prompt_key\)"):
        dataset([file], processor, prompt_key="question")
    with pytest.raises(DataError, match="does not exist; write it with a data_preprocess/ script"):
        dataset([str(tmp_path / "nope.parquet")], processor)
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.Table.from_pylist([verl_row("x", [])]).slice(0, 0), empty)
    with pytest.raises(DataError, match="empty.parquet: the file has no rows"):
        dataset([str(empty)], processor)


def test_overlong_rows_rejected_filtered_or_truncated_never_through_an_image(tiny_vl, tmp_path, caplog):
    processor, _ = tiny_vl
    long_text = "Find the area of the figure. " * 20
    file = write(tmp_path, [verl_row("<image>short", [png()]), verl_row("<image>" + long_text, [png()])], "o.parquet")
    with pytest.raises(DataError, match=r"o\.parquet row 1: the prompt has \d+ tokens, more than "
                                        r"data.max_prompt_length=64"):
        dataset([file], processor, max_prompt_length=64, filter_overlong_prompts=False)
    with caplog.at_level(logging.WARNING):
        ds = dataset([file], processor, max_prompt_length=64, filter_overlong_prompts=True)
    assert len(ds) == 1 and "o.parquet row 1" in caplog.text and ds.filtered  # logged, never silent
    # right truncation cuts text only: allowed, and both views lose the same tokens
    ds = dataset([file], processor, max_prompt_length=64, filter_overlong_prompts=False, truncation="right")
    row = ds[1]
    assert int(row["attention_mask"].sum()) == 64
    assert row["raw_prompt_ids"].count(processor.image_token_id) == 1
    # left truncation would cut the image at the start of the prompt: rejected
    with pytest.raises(DataError, match=r"o\.parquet row 1: truncating this \d+-token prompt to 64 would cut image"):
        dataset([file], processor, max_prompt_length=64, filter_overlong_prompts=False, truncation="left")


def test_unknown_data_key_suggests_the_right_one():
    with pytest.raises(ValueError, match=r"unknown key data.max_prompt_len; did you mean data.max_prompt_length"):
        DataConfig.from_mapping({"max_prompt_len": 10})
    cfg = DataConfig.from_mapping({"train_files": "a.parquet", "use_shm": False, "max_prompt_length": 10})
    assert cfg.train_files == ("a.parquet",) and cfg.max_prompt_length == 10
    with pytest.raises(ValueError, match="data.truncation='middle'"):
        DataConfig(truncation="middle")


# ---------------------------------------------------------------- resumable order
def test_loader_state_round_trips_for_exact_resume(tiny_vl, shapes_files):
    processor, _ = tiny_vl
    ds = dataset([shapes_files["train"]], processor)  # 64 rows, batches of 24 -> 2 per epoch

    def ids(batch):
        return batch["index"].tolist()

    loader = ResumableLoader(ds, batch_size=24, shuffle=True, seed=7, num_workers=0, collate_fn=collate_fn)
    stream = loader.iterate_forever()
    first = [ids(next(stream)) for _ in range(3)]  # crosses into epoch 1
    state = loader.state_dict()
    assert state == {"epoch": 1, "position": 24, "seed": 7}
    expected_next = [ids(next(stream)) for _ in range(3)]
    resumed = ResumableLoader(ds, batch_size=24, shuffle=True, seed=7, collate_fn=collate_fn)
    resumed.load_state_dict(state)
    stream2 = resumed.iterate_forever()
    assert [ids(next(stream2)) for _ in range(3)] == expected_next
    assert first[0] != first[2]  # epochs are shuffled differently
    assert sorted(first[0] + first[1]) == sorted(set(first[0] + first[1]))  # no row twice within an epoch
    with pytest.raises(ValueError, match="differs from data.seed=8"):
        ResumableLoader(ds, batch_size=24, seed=8).load_state_dict(state)


def test_images_given_as_paths_and_file_urls(tiny_vl, tmp_path):
    processor, _ = tiny_vl
    image_file = tmp_path / "red.png"
    image_file.write_bytes(png())
    rows = [verl_row("<image>p", []), verl_row("<image>u", [])]
    rows[0]["images"] = [{"bytes": None, "path": str(image_file)}]
    rows[1]["images"] = [{"bytes": None, "path": f"file://{image_file}"}]
    ds = dataset([write(tmp_path, rows)], processor)
    assert ds[0]["multi_modal_data"]["image"][0].getpixel((0, 0)) == (255, 0, 0)
    assert ds[1]["multi_modal_data"]["image"][0].size == (56, 56)
    rows[0]["images"] = [{"bytes": None, "path": str(tmp_path / "missing.png")}]
    with pytest.raises(DataError, match=r"row 0 image 0: cannot read the image \(FileNotFoundError"):
        dataset([write(tmp_path, rows[:1], "missing.parquet")], processor)
