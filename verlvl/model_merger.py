"""`python -m verlvl.model_merger [merge] --local_dir .../global_step_N/actor --target_dir X`: a sharded checkpoint as an HF folder."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import warnings
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".index.json")


class MergeError(ValueError):
    """The checkpoint or the config folder cannot be merged; the message names the folder and the option."""


def checkpoint_dir(local_dir: str | Path) -> Path:
    """The folder holding dcp/: `--local_dir` itself (veRL's .../global_step_N/actor) or its actor/."""
    folder = Path(local_dir).expanduser()
    for candidate in (folder, folder / "actor"):
        if (candidate / "dcp" / ".metadata").is_file():
            return candidate
    if not folder.exists():
        raise MergeError(f"--local_dir {folder} does not exist")
    raise MergeError(f"--local_dir {folder} holds no sharded checkpoint (no dcp/.metadata): give a "
                     "trainer.default_local_dir/global_step_N/actor folder")


def config_dir(ckpt: Path, hf_model_path: str | None) -> Path:
    """Where config.json and the tokenizer/processor files come from: --hf_model_path, else the checkpoint's
    huggingface/ folder (written beside every actor checkpoint)."""
    candidates = [Path(hf_model_path).expanduser()] if hf_model_path else [ckpt / "huggingface"]
    for folder in candidates:
        if (folder / "config.json").is_file():
            return folder
    where = candidates[0]
    raise MergeError(f"no config.json in {where}: pass --hf_model_path with the model folder the run started "
                     "from (actor_rollout_ref.model.path), which gives the config, tokenizer and processor")


def _model_class(config):
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING

    return AutoModelForImageTextToText if type(config) in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING else AutoModelForCausalLM


def load_merged_state(ckpt: Path, config, dtype=None, lora_alpha: float | None = None) -> tuple[object, dict]:
    """(a meta-device model of the config, the full state dict read from dcp/ without any process group; LoRA
    adapters folded into their base weights, W + alpha/r * B @ A, as the run's own export does)."""
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    with torch.device("meta"):  # in the export dtype: save_pretrained records the parameters' dtype
        model = _model_class(config).from_config(config, **({"dtype": dtype} if dtype is not None else {}))
    stored = FileSystemReader(str(ckpt / "dcp")).read_metadata().state_dict_metadata
    template = {key[len("model."):]: torch.empty(tuple(info.size), dtype=info.properties.dtype)
                for key, info in stored.items() if key.startswith("model.") and isinstance(info, TensorStorageMetadata)}
    state = {"model": template}
    with warnings.catch_warnings():  # "torch.distributed is ... uninitialized": one process reads every shard
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, storage_reader=FileSystemReader(str(ckpt / "dcp")),
                 planner=DefaultLoadPlanner(allow_partial_load=True), no_dist=True)
    merged = state["model"]
    if any(LORA_PARTS[1][0] in key for key in merged):
        merged = fold_lora(merged, ckpt, lora_alpha)
    wanted = model.state_dict()
    missing = sorted(k for k in wanted if k not in merged and not _is_tied(model, k))
    extra = sorted(k for k in merged if k not in wanted)
    if missing or extra:
        raise MergeError(f"{ckpt / 'dcp'} does not fit {type(model).__name__}: " + "; ".join(
            f"{len(keys)} weights {what} (e.g. {keys[:3]})" for keys, what in ((missing, "missing"), (extra, "unknown"))
            if keys) + ". Is --hf_model_path the model this checkpoint was trained from?")
    for key, value in merged.items():
        if tuple(value.shape) != tuple(wanted[key].shape):
            raise MergeError(f"{ckpt / 'dcp'}: {key} has shape {tuple(value.shape)}, the config wants "
                             f"{tuple(wanted[key].shape)}")
    if dtype is not None:
        merged = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in merged.items()}
    return model, merged


LORA_PARTS = ((".base_layer.weight", "base"), (".lora_A.default.weight", "A"), (".lora_B.default.weight", "B"))


def lora_alpha_of(ckpt: Path, given: float | None) -> float:
    """--lora_alpha, else the adapter config the export wrote, else the run's config.yaml (RUN_DIR is two
    folders above global_step_N/actor)."""
    if given is not None:
        return float(given)
    adapter = ckpt / "huggingface" / "lora_adapter" / "adapter_config.json"
    if adapter.is_file():
        return float(json.loads(adapter.read_text())["lora_alpha"])
    run_config = ckpt.parents[1] / "config.yaml"
    if run_config.is_file():
        from omegaconf import OmegaConf

        alpha = OmegaConf.select(OmegaConf.load(run_config), "actor_rollout_ref.model.lora_alpha")
        if alpha is not None:
            return float(alpha)
    raise MergeError(f"{ckpt / 'dcp'} holds LoRA adapters but neither {adapter} nor {run_config} gives their "
                     "alpha: pass --lora_alpha (the run's actor_rollout_ref.model.lora_alpha)")


def fold_lora(state: dict, ckpt: Path, lora_alpha: float | None) -> dict:
    parts: dict[str, dict] = {}
    out = {}
    for name, tensor in state.items():
        for suffix, kind in LORA_PARTS:
            if name.endswith(suffix):
                parts.setdefault(name[:-len(suffix)], {})[kind] = tensor
                break
        else:
            out[name.replace(".base_layer.", ".")] = tensor  # a bias of an adapted layer, under the base name
    alpha = lora_alpha_of(ckpt, lora_alpha)
    for module, p in parts.items():
        if set(p) != {"base", "A", "B"}:
            raise MergeError(f"{ckpt / 'dcp'}: the adapted layer {module} lacks {sorted({'base', 'A', 'B'} - set(p))}")
        scaling = alpha / p["A"].shape[0]  # alpha / rank, as peft scales
        out[f"{module}.weight"] = (p["base"].float() + (p["B"].float() @ p["A"].float()) * scaling).to(p["base"].dtype)
    return out


def _is_tied(model, key: str) -> bool:
    return bool(getattr(model.config.get_text_config(), "tie_word_embeddings", False)) and key.endswith("lm_head.weight")


def _dtype(config, name: str | None):
    import torch

    if name and name != "auto":
        return getattr(torch, name)
    value = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    return getattr(torch, value) if isinstance(value, str) else value


def merge(local_dir: str, target_dir: str, hf_model_path: str | None = None, dtype: str | None = None,
          trust_remote_code: bool = False, lora_alpha: float | None = None) -> Path:
    """Writes target_dir: the weights in the release dtype (or `dtype`), the config, and every tokenizer,
    processor, chat-template and generation-config file of the config folder."""
    from transformers import AutoConfig

    ckpt = checkpoint_dir(local_dir)
    source = config_dir(ckpt, hf_model_path)
    config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    model, state = load_merged_state(ckpt, config, _dtype(config, dtype), lora_alpha)
    target = Path(target_dir).expanduser()
    if target.resolve() == source.resolve():
        raise MergeError(f"--target_dir {target} is the config folder itself: choose another folder")
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target, state_dict=state)
    for path in source.iterdir():  # the tokenizer, processor, chat template and generation config as saved
        if path.is_file() and not path.name.endswith(WEIGHT_SUFFIXES) and path.name != "config.json":
            shutil.copy2(path, target / path.name)
    return target


def compare(local_dir: str, test_hf_dir: str, hf_model_path: str | None = None,
            lora_alpha: float | None = None) -> list[str]:
    """veRL's `test`: every weight of the checkpoint against a reference HF folder; returns the differences."""
    import torch
    from transformers import AutoConfig

    ckpt = checkpoint_dir(local_dir)
    config = AutoConfig.from_pretrained(config_dir(ckpt, hf_model_path))
    reference = _model_class(config).from_pretrained(test_hf_dir).state_dict()
    _, state = load_merged_state(ckpt, config, lora_alpha=lora_alpha)
    problems = [f"{k}: not in {test_hf_dir}" for k in state if k not in reference]
    for key, value in state.items():
        if key in reference:
            ref = reference[key]
            if ref.shape != value.shape:
                problems.append(f"{key}: shape {tuple(value.shape)} vs {tuple(ref.shape)}")
            elif not torch.allclose(value.to(ref.dtype), ref, atol=1e-6 if ref.dtype == torch.float32 else 1e-2):
                problems.append(f"{key}: max difference {(value.to(ref.dtype) - ref).abs().max().item():.3g}")
    return problems


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--backend", default="fsdp", choices=["fsdp"], help="verlvl writes FSDP2 (DCP) checkpoints")
    common.add_argument("--local_dir", required=True, help="the checkpoint: trainer.default_local_dir/global_step_N/actor")
    common.add_argument("--hf_model_path", default=None,
                        help="config/tokenizer/processor source (default: LOCAL_DIR/huggingface)")
    common.add_argument("--lora_alpha", type=float, default=None,
                        help="a LoRA run's actor_rollout_ref.model.lora_alpha (default: from the checkpoint's "
                             "lora_adapter/ or the run's config.yaml)")
    common.add_argument("--trust-remote-code", "--trust_remote_code", dest="trust_remote_code", action="store_true")
    for flag in ("--tie-word-embedding", "--is-value-model", "--use_cpu_initialization"):  # veRL's; read from config
        common.add_argument(flag, action="store_true", help=argparse.SUPPRESS)
    parser = argparse.ArgumentParser(prog="python -m verlvl.model_merger", description=__doc__)
    sub = parser.add_subparsers(dest="operation")
    for name, parents in (("merge", [common]),):
        p = sub.add_parser(name, parents=parents, help="write the HF folder")
        p.add_argument("--target_dir", required=True, help="the HF folder to write")
        p.add_argument("--dtype", default=None, help="bfloat16, float16, float32 (default: the config's dtype)")
        p.add_argument("--hf_upload_path", default=None, help=argparse.SUPPRESS)
        p.add_argument("--private", action="store_true", help=argparse.SUPPRESS)
    t = sub.add_parser("test", parents=[common], help="compare the checkpoint with a reference HF folder")
    t.add_argument("--test_hf_dir", required=True)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in ("merge", "test", "-h", "--help"):
        argv = ["merge", *argv]  # `python -m verlvl.model_merger --local_dir ... --target_dir ...`
    parser = _parser()
    args = parser.parse_args(argv)
    if args.operation is None:
        parser.error("give merge (or test) with --local_dir")
    try:
        if args.operation == "test":
            problems = compare(args.local_dir, args.test_hf_dir, args.hf_model_path, args.lora_alpha)
            print("\n".join(problems) if problems else f"{args.local_dir} matches {args.test_hf_dir}")
            return 1 if problems else 0
        if args.hf_upload_path:
            raise MergeError("--hf_upload_path: verlvl does not upload; push the folder with `hf upload`")
        print(merge(args.local_dir, args.target_dir, args.hf_model_path, args.dtype, args.trust_remote_code,
                    args.lora_alpha))
        return 0
    except MergeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
