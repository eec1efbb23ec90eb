"""The model merger: FSDP2 checkpoints sharded over 2 ranks (LoRA too) become HF folders with the export's weights and log-probs."""

import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image

from verlvl.model_merger import WEIGHT_SUFFIXES, main, merge

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_and_save(rank: int, port: int, path: str, actor_dir: str, lora_rank: int = 0) -> None:
    """What the actor worker does: FSDP2 over 2 ranks (LoRA adapters when lora_rank > 0), one optimizer step,
    a DCP save and an HF export."""
    import contextlib

    from verlvl.engine.checkpoint import export_hf, save_sharded
    from verlvl.engine.fsdp import apply_fsdp2
    from verlvl.engine.lora import LoraSpec, add_adapters
    from verlvl.engine.loading import load_model, load_sharded, parameters_on_meta
    from verlvl.models.processor import load_processor, load_tokenizer

    def build(empty: bool):
        model = load_model(path, empty=empty)
        if lora_rank:
            with parameters_on_meta() if empty else contextlib.nullcontext():
                add_adapters(model, LoraSpec(lora_rank, alpha=32))
        return model

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.manual_seed(0)  # rank 0's adapters are the ones broadcast
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        model = load_sharded(build, apply_fsdp2, "cpu")
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        ids = torch.tensor([[30, 40, 50, 60, 70]])
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        save_sharded(actor_dir, model, optimizer)
        export_hf(os.path.join(actor_dir, "huggingface"), model, load_tokenizer(path), load_processor(path))
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def checkpoint(tiny_vl_path, tmp_path_factory):
    """global_step_1/actor with dcp/ from 2 ranks, and the export the run wrote beside it."""
    actor = tmp_path_factory.mktemp("ckpt") / "global_step_1" / "actor"
    mp.spawn(_train_and_save, args=(_free_port(), str(tiny_vl_path), str(actor)), nprocs=2, join=True)
    return actor


def _log_probs(folder, image):
    from transformers import AutoModelForImageTextToText

    from verlvl.models.processor import load_processor

    processor = load_processor(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    text = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>what colour?<|im_end|>\n<|im_start|>assistant\nred"
    inputs = processor(text=[text], images=[image], return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    return torch.log_softmax(logits[0, :-1], -1).gather(-1, inputs["input_ids"][0, 1:, None])[:, 0]


def test_merged_folder_equals_the_export_in_weights_and_log_probs(checkpoint, tiny_vl_path, tmp_path):
    from transformers import AutoModelForImageTextToText

    # a checkpoint saved without the weight export: huggingface/ keeps only config, tokenizer and processor
    bare = tmp_path / "bare" / "actor"
    shutil.copytree(checkpoint / "dcp", bare / "dcp")
    (bare / "huggingface").mkdir(parents=True)
    for f in (checkpoint / "huggingface").iterdir():
        if not f.name.endswith(WEIGHT_SUFFIXES):
            shutil.copy2(f, bare / "huggingface" / f.name)
    target = merge(str(bare), str(tmp_path / "merged"))
    export = checkpoint / "huggingface"
    merged, exported = (AutoModelForImageTextToText.from_pretrained(p).state_dict() for p in (target, export))
    assert sorted(merged) == sorted(exported)
    assert all(torch.equal(merged[k], exported[k]) for k in merged)
    base = AutoModelForImageTextToText.from_pretrained(tiny_vl_path).state_dict()
    assert not torch.equal(merged["lm_head.weight"], base["lm_head.weight"])  # the trained weights, not the base
    for name in ("tokenizer.json", "chat_template.jinja", "generation_config.json", "processor_config.json"):
        if (export / name).exists():
            assert (target / name).read_bytes() == (export / name).read_bytes(), name
    image = Image.new("RGB", (56, 56), (200, 30, 30))
    assert torch.equal(_log_probs(target, image), _log_probs(export, image))


def test_verl_command_line_and_test_operation(checkpoint, tmp_path):
    done = subprocess.run([sys.executable, "-m", "verlvl.model_merger", "merge", "--backend", "fsdp", "--local_dir",
                           str(checkpoint), "--target_dir", str(tmp_path / "hf")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "hf" / "model.safetensors").exists() and (tmp_path / "hf" / "config.json").exists()
    # the short form (here with the step folder and a dtype), and veRL's `test` against a reference
    assert main(["--local_dir", str(checkpoint.parent), "--target_dir", str(tmp_path / "hf2"), "--dtype",
                 "bfloat16"]) == 0
    from transformers import AutoModelForImageTextToText

    bf16 = AutoModelForImageTextToText.from_pretrained(tmp_path / "hf2", dtype="auto")
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    assert main(["test", "--backend", "fsdp", "--local_dir", str(checkpoint),
                 "--test_hf_dir", str(checkpoint / "huggingface")]) == 0


def test_bad_folders_are_named(checkpoint, tmp_path, capsys):
    assert main(["--local_dir", str(tmp_path / "nowhere"), "--target_dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "--local_dir" in err and "does not exist" in err
    (tmp_path / "empty").mkdir()
    assert main(["--local_dir", str(tmp_path / "empty"), "--target_dir", str(tmp_path / "x")]) == 2
    assert "no sharded checkpoint (no dcp/.metadata)" in capsys.readouterr().err
    no_config = tmp_path / "nocfg" / "actor"
    shutil.copytree(checkpoint / "dcp", no_config / "dcp")
    assert main(["--local_dir", str(no_config), "--target_dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "no config.json in" in err and "--hf_model_path" in err
    assert main(["--local_dir", str(no_config), "--hf_model_path", str(checkpoint / "huggingface"),
                 "--target_dir", str(tmp_path / "y")]) == 0


@pytest.fixture(scope="module")
def lora_checkpoint(tiny_vl_path, tmp_path_factory):
    actor = tmp_path_factory.mktemp("lora") / "global_step_1" / "actor"
    mp.spawn(_train_and_save, args=(_free_port(), str(tiny_vl_path), str(actor), 8), nprocs=2, join=True)
    return actor


def test_lora_checkpoint_merges_its_adapters_as_the_export_does(lora_checkpoint, tiny_vl_path, tmp_path, capsys):
    from transformers import AutoModelForImageTextToText

    export = lora_checkpoint / "huggingface"
    assert (export / "lora_adapter" / "adapter_config.json").exists()
    target = merge(str(lora_checkpoint), str(tmp_path / "merged"))  # alpha from lora_adapter/adapter_config.json
    merged, exported, base = (AutoModelForImageTextToText.from_pretrained(p).state_dict()
                              for p in (target, export, tiny_vl_path))
    assert sorted(merged) == sorted(exported) == sorted(base)  # the base model's names, no adapter tensors
    assert all(torch.equal(merged[k], exported[k]) for k in merged)
    changed = [k for k in merged if not torch.equal(merged[k], base[k])]
    assert changed and all(k.endswith("proj.weight") for k in changed)  # only the adapted layers moved

    # saved without the export: alpha from the run's config.yaml, or the command line, or a clear error
    bare = tmp_path / "run" / "global_step_1" / "actor"
    shutil.copytree(lora_checkpoint / "dcp", bare / "dcp")
    args = ["--local_dir", str(bare), "--hf_model_path", str(tiny_vl_path)]
    assert main([*args, "--target_dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "holds LoRA adapters but neither" in err and "pass --lora_alpha" in err
    (tmp_path / "run" / "config.yaml").write_text("actor_rollout_ref:\n  model:\n    lora_rank: 8\n    lora_alpha: 32\n")
    assert main([*args, "--target_dir", str(tmp_path / "y")]) == 0
    assert main([*args, "--target_dir", str(tmp_path / "z"), "--lora_alpha", "16"]) == 0
    y, z = (AutoModelForImageTextToText.from_pretrained(tmp_path / d).state_dict() for d in ("y", "z"))
    assert all(torch.equal(y[k], exported[k]) for k in y)
    assert not all(torch.equal(z[k], exported[k]) for k in z)  # half the alpha: another model
