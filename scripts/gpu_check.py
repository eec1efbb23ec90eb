"""Two GRPO steps on one CUDA GPU through the real worker class (without Ray), for the tiny model and a
Qwen2.5-VL-7B-shaped model with random weights: peak GPU memory, step time, tokens/s, per configuration.

    bash scripts/gpu_check.sh            (installs the carried wheels, runs the gpu tests, then this)
    python scripts/gpu_check.py --models tiny,7b --layers-no-offload 8

The GPU machines here reach no hub and have no Ray: the worker class is driven in-process with a
one-rank process group ("cpu:gloo,cuda:nccl", FSDP2 and all), Ray's module replaced by an inert stub
(the worker only uses it to start process groups, which this script does itself). The 7B-shaped model
uses the tiny tokenizer and processor with Qwen2.5-VL-7B's configuration (152k vocabulary included)
and is initialised on the GPU, not read from disk.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Qwen2.5-VL-7B-Instruct's config.json, the parts that size the model.
QWEN25VL_7B_TEXT = dict(
    hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
    num_key_value_heads=4, vocab_size=152064, max_position_embeddings=128000, rms_norm_eps=1e-6,
    tie_word_embeddings=False,
    rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]})
QWEN25VL_7B_VISION = dict(
    depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584, patch_size=14,
    spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31],
    tokens_per_second=2, in_chans=3, hidden_act="silu")


class _Inert:
    """Stands in for anything of Ray's: a decorator returns what it decorates; everything else is inert."""

    def __call__(self, *args, **kwargs):
        if len(args) == 1 and not kwargs and callable(args[0]):
            return args[0]
        return _Inert()

    def __getattr__(self, name):
        return _Inert()


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Inert()


class _RayStub(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "ray":
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def install_ray_stub_if_missing(force: bool = False) -> None:
    if force or importlib.util.find_spec("ray") is None:
        sys.meta_path.insert(0, _RayStub())


def init_one_rank_group(port: int = 29517) -> None:
    import torch
    import torch.distributed as dist

    from verlvl.utils.device import get_dist_backend

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(port))
    if torch.cuda.is_available():
        torch.cuda.set_device(0)
    dist.init_process_group(get_dist_backend(), rank=0, world_size=1)


class _Memory:
    """Peak allocated GPU memory (zero on CPU, where the check only proves the wiring)."""

    @staticmethod
    def reset() -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    @staticmethod
    def peak_gb() -> float:
        import torch

        if not torch.cuda.is_available():
            return 0.0
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**30


def build_folders(root: Path, layers: int) -> dict[str, Path]:
    """The tiny checkpoint, and a folder with the tiny tokenizer/processor and the 7B-shaped config."""
    from transformers import Qwen2_5_VLConfig

    from verlvl.models.tiny import TinyVLConfig, build_tiny_qwen_vl

    tiny = build_tiny_qwen_vl(root / "tiny",
                              TinyVLConfig(hidden_size=256, num_hidden_layers=4, num_attention_heads=8))
    big = build_tiny_qwen_vl(root / "qwen25vl_7b_shaped")
    tiny_config = json.loads((big / "config.json").read_text())
    ids = {k: tiny_config[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id",
                                       "vision_end_token_id")}
    special = {k: tiny_config["text_config"][k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    text = dict(QWEN25VL_7B_TEXT, num_hidden_layers=layers, **special)
    config = Qwen2_5_VLConfig(text_config=text, vision_config=QWEN25VL_7B_VISION, **ids)
    config.tie_word_embeddings = False
    config.dtype = "bfloat16"
    config.save_pretrained(big)
    for weights in big.glob("*.safetensors"):
        weights.unlink()  # never the tiny weights by mistake: the patched loader initialises on the GPU
    (big / "verlvl_tiny.json").unlink(missing_ok=True)
    return {"tiny": tiny, "7b": big}


def initialise_on_gpu_instead_of_reading(folder: Path) -> None:
    """from_pretrained(folder) builds the architecture on the GPU with random weights (no checkpoint)."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    original = AutoModelForImageTextToText.from_pretrained.__func__

    def from_pretrained(cls, path, *args, **kwargs):
        if Path(path) != folder:
            return original(cls, path, *args, **kwargs)
        with torch.device("cuda"):
            return cls.from_config(AutoConfig.from_pretrained(path), dtype=kwargs.get("dtype", torch.float32))

    AutoModelForImageTextToText.from_pretrained = classmethod(from_pretrained)


def prompts_batch(path: Path, n_prompts: int, step: int):
    import numpy as np

    from verlvl.data.collate import collate_to_dataproto
    from verlvl.data.config import DataConfig
    from verlvl.data.rl_dataset import RLDataset
    from verlvl.data.shapes_task import write
    from verlvl.models.processor import load_processor

    processor = load_processor(path)
    files = write(tempfile.mkdtemp(), num_train=n_prompts, num_test=1)
    dataset = RLDataset([files["train"]], processor.tokenizer, processor, DataConfig(max_prompt_length=256))
    batch = collate_to_dataproto([dataset[i] for i in range(n_prompts)])
    batch.non_tensor_batch["uid"] = np.array([f"{step}-{i}" for i in range(n_prompts)], dtype=object)
    batch.meta_info["global_step"] = step
    return batch


def run_config(name: str, path: Path, offload: bool, args) -> dict:
    import torch

    from verlvl.algos import get_adv_estimator_fn
    from verlvl.workers.fsdp_workers import ActorRolloutRefWorker

    fsdp = {"param_offload": offload, "optimizer_offload": offload}
    config = {"model": {"path": str(path), "enable_gradient_checkpointing": True,
                        "use_remove_padding": args.remove_padding},
              "actor": {"ppo_mini_batch_size": args.prompts, "ppo_micro_batch_size_per_gpu": args.micro,
                        "use_kl_loss": True, "kl_loss_coef": 0.001, "optim": {"lr": 1e-6},
                        "fsdp_config": fsdp},
              "ref": {"log_prob_micro_batch_size_per_gpu": args.micro,
                      "fsdp_config": {"param_offload": offload}},
              "rollout": {"name": "hf", "n": args.n, "response_length": args.response_length,
                          "temperature": 1.0, "micro_batch_size": args.prompts * args.n,
                          "log_prob_micro_batch_size_per_gpu": args.micro}}
    _Memory.reset()
    started = time.perf_counter()
    worker = ActorRolloutRefWorker(config, role="actor_rollout_ref")
    worker.init_model()
    out = {"config": name, "offload": offload, "init_s": time.perf_counter() - started,
           "params_b": sum(p.numel() for p in worker.actor.model.parameters()) / 1e9}
    steps = []
    for step in (1, 2):
        _Memory.reset()
        t0 = time.perf_counter()
        batch = worker.generate_sequences(prompts_batch(path, args.prompts, step))
        t_gen = time.perf_counter() - t0
        responses = batch.batch["responses"]
        scores = (responses % 2 == 0).float().mean(-1)  # any deterministic reward of the tokens
        token_scores = torch.zeros_like(responses, dtype=torch.float32)
        lengths = batch.batch["response_mask"].sum(-1).clamp(min=1)
        token_scores[torch.arange(len(batch)), lengths - 1] = scores
        batch.union(worker.compute_log_prob(batch).select(batch_keys=["old_log_probs"]))
        batch.union(worker.compute_ref_log_prob(batch))
        adv, _ = get_adv_estimator_fn("grpo")(token_level_rewards=token_scores,
                                              response_mask=batch.batch["response_mask"],
                                              index=batch.non_tensor_batch["uid"])
        batch.batch["advantages"] = adv
        metrics = worker.update_actor(batch).meta_info["metrics"]
        peak = _Memory.peak_gb()
        seconds = time.perf_counter() - t0
        tokens = int(batch.batch["attention_mask"].sum())
        steps.append({"step_s": seconds, "gen_s": t_gen, "tokens_per_s": tokens / seconds,
                      "peak_gb": peak,
                      "grad_norm": metrics["actor/grad_norm"],
                      "padding_ratio": metrics.get("perf/padding_ratio")})
    out.update(steps[-1])
    out["first_step_s"] = steps[0]["step_s"]
    del worker
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="tiny,7b")
    parser.add_argument("--layers", type=int, default=28,
                        help="decoder layers of the 7B-shaped model with offload")
    parser.add_argument("--layers-no-offload", type=int, default=8,
                        help="decoder layers of the 7B-shaped model without offload (all 28 with fp32 Adam "
                             "need ~130 GB: more than one GPU)")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--micro", type=int, default=8)
    parser.add_argument("--response-length", type=int, default=128)
    parser.add_argument("--remove-padding", action="store_true")
    parser.add_argument("--allow-cpu", action="store_true", help="run on the CPU (proves the wiring only)")
    parser.add_argument("--stub-ray", action="store_true",
                        help="use the Ray stub even where Ray is installed")
    args = parser.parse_args()
    install_ray_stub_if_missing(args.stub_ray)
    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        sys.exit("gpu_check: no CUDA device (--allow-cpu runs the same steps on the CPU)")
    init_one_rank_group()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            for offload in (False, True):
                layers = args.layers if offload else args.layers_no_offload
                folders = build_folders(Path(tmp) / f"{model}_{layers}", layers)
                if model == "7b":
                    initialise_on_gpu_instead_of_reading(folders["7b"])
                name = model if model == "tiny" else f"7b-shaped, {layers} layers"
                try:
                    results.append(run_config(name, folders[model], offload, args))
                except torch.OutOfMemoryError as e:
                    results.append({"config": name, "offload": offload, "error": f"OOM: {str(e)[:120]}"})
                    torch.cuda.empty_cache()
                print(json.dumps(results[-1]), flush=True)
    print("\n| model | offload | params (B) | step s | tokens/s | peak GPU GiB | gen s | padding |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['config']} | {r['offload']} | - | - | - | - | - | {r['error']} |")
            continue
        print(f"| {r['config']} | {r['offload']} | {r['params_b']:.2f} | {r['step_s']:.2f} | "
              f"{r['tokens_per_s']:.0f} | "
              f"{r['peak_gb']:.1f} | {r['gen_s']:.2f} | {r['padding_ratio']:.2f} |")


if __name__ == "__main__":
    main()
