"""verlvl against TRL's GRPOTrainer on identical work, measured in one invocation.

    python tests/bench/bench_vs_trl.py [--steps 12]      (needs the bench extra: pip install -e .[bench])
    .venv-vllm/bin/python tests/bench/bench_vs_trl.py     (adds the vLLM rows: see README, Performance)

Both sides train the same locally built Qwen2.5-VL (~11M parameters, head_dim 32) on the same parquet
rows (the built-in shapes task) with the same prompts per step, samples per prompt, response length,
learning rate, one policy epoch, no KL and no entropy term, and the same reward function. Rows: HF
`generate` on both sides, then each side's best rollout that runs here (vLLM where it is installed
and runs: verlvl's vllm rollout, TRL's colocated vLLM; a side whose vLLM fails says why and keeps HF).
Prints a markdown table: median seconds per step (warm-up steps skipped) and their ratio, verlvl's
phase breakdown, its controller overhead, the machine's measured fp32 matmul peak and the MFU of
verlvl's training phase.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from verlvl.models.tiny import TinyVLConfig, build_tiny_qwen_vl  # noqa: E402

BENCH_MODEL = TinyVLConfig(hidden_size=384, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=12,
                           num_key_value_heads=4, vision_hidden_size=128, vision_heads=4, vision_depth=2,
                           vision_intermediate_size=256, seed=0)
PHASES = ("gen", "reward", "old_log_prob", "ref", "adv", "update_actor", "weight_sync")


def shapes_reward(prompts=None, completions=None, answer=None, **kwargs) -> list[float]:
    """TRL's reward signature around the same scorer verlvl uses for this data."""
    from verlvl.reward.scorers import default_compute_score

    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [default_compute_score("verlvl/shapes", t, a)["score"] for t, a in zip(texts, answer)]


def matmul_peak_flops(n: int = 1536, repeats: int = 4, trials: int = 7) -> float:
    """fp32 matmul FLOP/s of this machine, all cores: the best of several trials, since one short
    measurement on a shared VM can land on a slow moment (one read 107 GFLOP/s against 175 usually)."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = 0.0
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - start))
    return best


def run_verlvl(model_path: str, data: dict, args, out: Path, workers: int, rollout: str = "hf") -> dict:
    from tests.trainer.helpers import compose_config
    from verlvl.main_ppo import run_ppo

    cfg = compose_config(
        f"actor_rollout_ref.model.path={model_path}", f"data.train_files={data['train']}", "data.val_files=null",
        f"data.train_batch_size={args.prompts}", f"actor_rollout_ref.actor.ppo_mini_batch_size={args.prompts}",
        f"actor_rollout_ref.rollout.n={args.n}", f"data.max_response_length={args.response_length}",
        f"actor_rollout_ref.actor.optim.lr={args.lr}", "actor_rollout_ref.actor.entropy_coeff=0.0",
        "actor_rollout_ref.actor.ppo_epochs=1", f"trainer.total_training_steps={args.steps}",
        "trainer.val_before_train=false", "trainer.test_freq=-1", "trainer.save_final=false",
        "trainer.logger=[jsonl]", f"trainer.default_local_dir={out}", f"trainer.n_gpus_per_node={workers}",
        f"actor_rollout_ref.rollout.name={rollout}", "actor_rollout_ref.rollout.cpu_kv_cache_gb=0.25")
    run_ppo(cfg)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["step"] > args.warmup]
    med = lambda k: statistics.median(r.get(k, 0.0) for r in rows)  # noqa: E731
    return {"step": med("timing_s/step"), "phases": {p: med(f"timing_s/{p}") for p in PHASES},
            "overhead": med("perf/controller_overhead_s"), "tokens": med("perf/total_num_tokens"),
            "score": rows[-1]["critic/score/mean"]}


def run_trl(model_path: str, data: dict, args, out: Path, use_vllm: bool = False) -> dict:
    import datasets
    import pyarrow.parquet as pq
    from PIL import Image
    from transformers import AutoModelForImageTextToText, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from verlvl.models.processor import load_processor
    from verlvl.workers.rollout.base import VISION_SPECIAL_TOKENS

    import io

    rows = pq.read_table(data["train"]).to_pylist()
    records = {"prompt": [], "image": [], "answer": []}
    for row in rows:
        text = row["prompt"][0]["content"].replace("<image>", "")
        records["prompt"].append([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}])
        records["image"].append(Image.open(io.BytesIO(row["images"][0]["bytes"])).convert("RGB"))
        records["answer"].append(row["reward_model"]["ground_truth"])
    dataset = datasets.Dataset.from_dict(records)
    processor = load_processor(model_path)
    vocab = processor.tokenizer.get_vocab()

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.times, self.last = [], None

        def on_step_begin(self, *a, **k):
            self.last = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.times.append(time.perf_counter() - self.last)

    timer = StepTimes()
    if use_vllm:  # vLLM's CPU backend sizes its KV cache from this (GiB), not from a memory fraction
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    config = GRPOConfig(
        output_dir=str(out), use_cpu=True, bf16=False, learning_rate=args.lr, max_steps=args.steps,
        per_device_train_batch_size=args.prompts * args.n, gradient_accumulation_steps=1,
        num_generations=args.n, max_completion_length=args.response_length, num_iterations=1, beta=0.0,
        temperature=1.0, logging_steps=1, save_strategy="no", report_to=[], remove_unused_columns=False,
        generation_kwargs={"suppress_tokens": [vocab[t] for t in VISION_SPECIAL_TOKENS if t in vocab]},
        dataloader_num_workers=0, seed=1,
        **({"use_vllm": True, "vllm_mode": "colocate"} if use_vllm else {}))
    model = AutoModelForImageTextToText.from_pretrained(model_path)
    trainer = GRPOTrainer(model=model, reward_funcs=[shapes_reward], args=config, train_dataset=dataset,
                          processing_class=processor, callbacks=[timer])
    trainer.train()
    return {"step": statistics.median(timer.times[args.warmup:])}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--response-length", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--workers", default="1,2", help="verlvl worker counts to run, e.g. 1 or 1,2")
    parser.add_argument("--rollouts", default="hf,vllm", help="verlvl rollouts in the order run (vllm only "
                        "where it is installed); hf is needed for the first row")
    args = parser.parse_args(argv)

    import torch
    from verlvl.data.shapes_task import write

    work = Path(tempfile.mkdtemp(prefix="verlvl_bench_"))
    model_path = str(build_tiny_qwen_vl(work / "model", BENCH_MODEL))
    from transformers import AutoModelForImageTextToText

    n_params = sum(p.numel() for p in AutoModelForImageTextToText.from_pretrained(model_path).parameters())
    data = write(str(work / "data"), num_train=256, num_test=8)
    peak = matmul_peak_flops()
    import ray

    has_vllm = importlib.util.find_spec("vllm") is not None
    runs, notes = {}, []
    for rollout in [r for r in args.rollouts.split(",") if r != "vllm" or has_vllm]:
        for workers in [int(w) for w in args.workers.split(",")]:  # 1 worker x all cores, or FSDP workers
            runs[rollout, workers] = run_verlvl(model_path, data, args, work / f"verlvl_{rollout}_{workers}",
                                                workers, rollout)
            ray.shutdown()
    peak = max(peak, matmul_peak_flops())  # again after the runs; the higher reading is the machine's
    torch.set_num_threads(os.cpu_count() or 1)
    trl = {"hf": run_trl(model_path, data, args, work / "trl")}
    if has_vllm:
        try:
            trl["vllm"] = run_trl(model_path, data, args, work / "trl_vllm", use_vllm=True)
        except Exception as e:  # noqa: BLE001 - reported in the table's notes, HF stays TRL's best
            notes.append(f"TRL with vLLM (colocate) did not run here: {type(e).__name__}: {str(e)[:300]}")
    else:
        notes.append("vLLM is not installed in this environment: both sides' best is HF generate")

    hf_runs = {w: run for (rollout, w), run in runs.items() if rollout == "hf"}
    ours_key = min(runs, key=lambda k: runs[k]["step"])
    ours, trl_best = runs[ours_key], min(trl, key=lambda k: trl[k]["step"])
    update_s = ours["phases"]["update_actor"]
    mfu = 6 * n_params * ours["tokens"] / max(update_s, 1e-9) / peak
    print(f"\n## verlvl vs TRL GRPOTrainer ({n_params / 1e6:.1f}M-parameter Qwen2.5-VL, {args.prompts} prompts x "
          f"{args.n} samples x {args.response_length} new tokens, {os.cpu_count()} CPU cores)\n")
    print("| rollout | verlvl s/step | TRL s/step | verlvl / TRL |\n|---|---|---|---|")
    for workers, run in hf_runs.items():
        label = "1 worker x all cores" if workers == 1 else f"{workers} FSDP workers"
        print(f"| HF generate, both sides (verlvl: {label}) | {run['step']:.2f} | {trl['hf']['step']:.2f} | "
              f"{run['step'] / trl['hf']['step']:.2f}x |")
    for (rollout, workers), run in runs.items():
        if rollout != "hf":
            print(f"| verlvl {rollout} rollout ({workers} worker(s)) vs TRL HF | {run['step']:.2f} | "
                  f"{trl['hf']['step']:.2f} | {run['step'] / trl['hf']['step']:.2f}x |")
    print(f"| each side's best here (verlvl: {ours_key[0]}, {ours_key[1]} worker(s); TRL: {trl_best}) | "
          f"{ours['step']:.2f} | {trl[trl_best]['step']:.2f} | {ours['step'] / trl[trl_best]['step']:.2f}x |")
    for note in notes:
        print(f"\nNote: {note}")
    # phase breakdown of each rollout engine's fastest run, side by side
    shown = {}
    for key, run in sorted(runs.items(), key=lambda kv: kv[1]["step"]):
        shown.setdefault(key[0], (key, run))
    print("\n| verlvl phase | " + " | ".join(f"{k[0]}, {k[1]} worker(s): s (share)" for k, _ in shown.values())
          + " |\n|---|" + "---|" * len(shown))
    for phase in PHASES:
        print(f"| {phase} | " + " | ".join(f"{r['phases'][phase]:.3f} ({r['phases'][phase] / r['step']:.0%})"
                                           for _, r in shown.values()) + " |")
    print("| controller overhead | " + " | ".join(f"{r['overhead']:.3f} ({r['overhead'] / r['step']:.0%})"
                                                  for _, r in shown.values()) + " |")
    print("| step | " + " | ".join(f"{r['step']:.3f}" for _, r in shown.values()) + " |")
    print(f"\nmatmul peak (fp32, measured): {peak / 1e9:.1f} GFLOP/s; verlvl training-phase MFU: {mfu:.1%} "
          f"(6 x params x {ours['tokens']:.0f} tokens / update_actor time)")


if __name__ == "__main__":
    main()
