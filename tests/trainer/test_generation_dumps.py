"""Generation dumps (veRL's trainer.rollout_data_dir / validation_data_dir), the run's sample files the
report reads, trainer.log_val_generations, and trainer.val_only evaluating a checkpoint (issue 18)."""

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from tests.trainer.helpers import SHORT, compose_config
from verlvl.protocol import DataProto
from verlvl.trainer.dumps import GenerationDump, RunSamples, generation_records


class Tokenizer:
    """Decodes ids as letters: enough to see which tokens a record holds."""

    def decode(self, ids, skip_special_tokens=False):
        return "".join(chr(ord("a") + i) for i in ids)


def batch_of_two_prompts_with_two_samples_each():
    red, blue = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")
    media = [{"image": [red]}, {"image": [red]}, {"image": [blue]}, {"image": []}]
    batch = DataProto.from_dict(
        {"prompts": torch.tensor([[0, 1, 2]] * 4), "responses": torch.tensor([[3, 4], [5, 0], [6, 6], [7, 8]]),
         "attention_mask": torch.tensor([[0, 1, 1, 1, 1]] * 4), "response_mask": torch.tensor([[1, 1], [1, 0]] * 2)},
        {"multi_modal_data": np.array(media, dtype=object), "uid": np.array(["a", "a", "b", "b"], dtype=object),
         "reward_model": np.array([{"ground_truth": "red"}] * 2 + [{"ground_truth": "blue"}] * 2, dtype=object),
         "data_source": np.array(["shapes"] * 4, dtype=object),
         "row_origin": np.array(["t.parquet row 0"] * 2 + ["t.parquet row 1"] * 2, dtype=object)})
    return batch


def test_records_follow_verl_and_images_are_written_once(tmp_path):
    batch = batch_of_two_prompts_with_two_samples_each()
    records = generation_records(batch, Tokenizer(), [1.0, 0.0, 0.5, 0.0], {"acc": [1.0, 0.0, 1.0, 0.0]}, step=3)
    assert records[0] == {"step": 3, "input": "bc", "output": "de", "gts": "red", "score": 1.0,
                          "data_source": "shapes", "row": "t.parquet row 0", "images": records[0]["images"],
                          "acc": 1.0}
    assert records[1]["output"] == "f"  # the masked token is not shown
    dump = GenerationDump(tmp_path / "dump")
    path = dump.write(3, records)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert path.name == "3.jsonl" and len(lines) == 4
    assert lines[0]["images"] == lines[1]["images"] and lines[0]["images"] != lines[2]["images"]
    assert lines[3]["images"] == []
    assert len(list((tmp_path / "dump" / "images").glob("*.png"))) == 2  # red and blue, once each
    assert Image.open(tmp_path / "dump" / lines[2]["images"][0]).getpixel((0, 0)) == (0, 0, 255)
    dump.write(3, records[:1])  # a second validation batch of the same step adds to it
    assert len(path.read_text().splitlines()) == 5
    GenerationDump(tmp_path / "dump").write(3, records[:1])  # a resumed run rewrites a crashed run's step
    assert len(path.read_text().splitlines()) == 1


def test_the_run_keeps_the_first_response_of_the_first_prompts_and_dumps_all_where_asked(tmp_path):
    samples = RunSamples(tmp_path / "run", rollout_data_dir=str(tmp_path / "rollouts"), per_step={"train": 1})
    batch = batch_of_two_prompts_with_two_samples_each()
    kept = samples.add("train", 1, batch, Tokenizer(), [0.0] * 4, {})
    assert [r["row"] for r in kept] == ["t.parquet row 0"]
    assert samples.add("train", 1, batch, Tokenizer(), [0.0] * 4, {}) == []  # this step has its one
    assert len((tmp_path / "rollouts" / "1.jsonl").read_text().splitlines()) == 8  # every row, of both calls
    assert len((tmp_path / "run" / "samples" / "train" / "1.jsonl").read_text().splitlines()) == 1
    assert not list((tmp_path / "run" / "samples" / "val").glob("*.jsonl"))
    two = RunSamples(tmp_path / "run2").add("val", 0, batch, Tokenizer(), [0.0] * 4, {})
    assert [r["row"] for r in two] == ["t.parquet row 0", "t.parquet row 1"]  # distinct prompts


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dumps_samples_and_val_only_evaluation_of_the_checkpoint(ray_local, tmp_path, monkeypatch, caplog):
    from verlvl.main_ppo import run_ppo

    monkeypatch.setenv("VERLVL_CACHE", str(tmp_path / "cache"))
    run_dir, rollouts, vals = tmp_path / "run", tmp_path / "rollouts", tmp_path / "vals"
    with caplog.at_level(logging.INFO, logger="verlvl"):
        run_ppo(compose_config(*SHORT, "trainer.total_training_steps=2", "trainer.val_before_train=true",
                               "trainer.save_final=true", "trainer.log_val_generations=3",
                               f"trainer.rollout_data_dir={rollouts}", f"trainer.validation_data_dir={vals}",
                               f"trainer.default_local_dir={run_dir}"))
    assert sorted(p.name for p in rollouts.glob("*.jsonl")) == ["1.jsonl", "2.jsonl"]
    step1 = [json.loads(line) for line in (rollouts / "1.jsonl").read_text().splitlines()]
    assert len(step1) == 16  # 4 prompts x n=4: every generation
    assert {"input", "output", "gts", "score", "step", "row", "images", "acc"} <= set(step1[0])
    assert all((rollouts / img).is_file() for r in step1 for img in r["images"])
    step2 = [json.loads(line) for line in (rollouts / "2.jsonl").read_text().splitlines()]
    referenced = {img for r in step1 + step2 for img in r["images"]}
    assert len({img for r in step1 for img in r["images"]}) == 4  # 16 samples of 4 prompts: 4 images
    assert {f"images/{p.name}" for p in (rollouts / "images").glob("*.png")} == referenced  # each written once
    assert "<|image_pad|><|image_pad|>" not in step1[0]["input"]
    assert (vals / "0.jsonl").is_file() and (run_dir / "samples" / "val" / "0.jsonl").is_file()
    assert len((run_dir / "samples" / "train" / "2.jsonl").read_text().splitlines()) == 4
    assert "val_kwargs" in (run_dir / "config.yaml").read_text()
    shown = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[validation]")]
    assert len(shown) == 3 and len(set(shown)) == 3  # three distinct rows, each named

    evaluation = run_ppo(compose_config(
        *SHORT, "trainer.val_only=true", "trainer.resume_mode=resume_path",
        f"trainer.resume_from_path={run_dir / 'global_step_2'}", "actor_rollout_ref.rollout.val_kwargs.n=2",
        "actor_rollout_ref.rollout.val_kwargs.do_sample=true", "actor_rollout_ref.rollout.val_kwargs.temperature=0.6",
        f"trainer.default_local_dir={tmp_path / 'eval'}"))
    assert "val-core/verlvl/shapes/acc/mean@2" in evaluation.metrics  # Pass@1 over 2 samples at T=0.6
    assert "val-core/verlvl/shapes/acc/best@2/mean" in evaluation.metrics
    assert not list((tmp_path / "eval").glob("global_step_*"))  # nothing trained, nothing saved
