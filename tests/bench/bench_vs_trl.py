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

TRL runs as a user tuning it for this machine would, not as shipped: torch threads = cores, no gradient
checkpointing (GRPOConfig turns it on by default; verlvl's default is off), HF generate with its KV cache,
in a fresh process. Both sides get glibc's allocator settings (TUNED_ENV) from process start: the script
re-executes itself with them, TRL's process and Ray's workers inherit them, and verlvl also passes them
to its workers (DEFAULT_WORKER_ENV). The output names the settings each side ran with.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from verlvl.models.tiny import TinyVLConfig, build_tiny_qwen_vl  # noqa: E402

BENCH_MODEL = TinyVLConfig(hidden_size=384, intermediate_size=1024, num_hidden_layers=6,
                           num_attention_heads=12, num_key_value_heads=4, vision_hidden_size=128,
                           vision_heads=4, vision_depth=2, vision_intermediate_size=256, seed=0)
PHASES = ("gen", "reward", "old_log_prob", "ref", "adv", "update_actor", "weight_sync")
# glibc keeps freed training buffers instead of returning them to the OS and page-faulting them back every
# step (~38% of a CPU step's time without it, see CPU_FACTS). Read once, at process start.
TUNED_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "17179869184"}


def has_tuned_env(environ=os.environ) -> bool:
    return all(environ.get(k) == v for k, v in TUNED_ENV.items())


def exec_env_of(pid: int | str = "self") -> dict[str, str]:
    """The environment a process was started with (what glibc read), from /proc."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def descends_from(pid: str, ancestor: int) -> bool:
    while pid not in ("0", "1"):
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = stat[stat.rindex(")") + 2:].split()[1]  # the parent's pid
        if pid == str(ancestor):
            return True
    return False


class WorkerEnvProbe:
    """Watches the Ray actor processes this process started (every `interval_s`) and records, for each one
    seen, whether it was started with TUNED_ENV."""

    def __init__(self, interval_s: float = 2.0):
        self.interval_s, self.seen = interval_s, {}

    def __enter__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(self.interval_s):
            for proc in (p for p in Path("/proc").iterdir() if p.name.isdigit()):
                try:
                    title = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
                    actor = title.startswith("ray::") and not any(w in title for w in ("IDLE", "Agent"))
                    if actor and proc.name not in self.seen and descends_from(proc.name, os.getpid()):
                        self.seen[proc.name] = has_tuned_env(exec_env_of(proc.name))
                except OSError:
                    continue

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self) -> str:
        tuned = sum(self.seen.values())
        return f"{tuned} of {len(self.seen)} Ray actor processes seen started with them"


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

    cfg = compose_config(  # the CPU demo's settings (GRPO, no gradient checkpointing), whatever the model
        "preset=tiny_demo", f"actor_rollout_ref.model.path={model_path}", f"data.train_files={data['train']}",
        "data.val_files=null", f"data.train_batch_size={args.prompts}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={args.prompts}",
        f"actor_rollout_ref.rollout.n={args.n}", f"data.max_response_length={args.response_length}",
        f"actor_rollout_ref.actor.optim.lr={args.lr}", "actor_rollout_ref.actor.entropy_coeff=0.0",
        "actor_rollout_ref.actor.ppo_epochs=1", f"trainer.total_training_steps={args.steps}",
        "trainer.val_before_train=false", "trainer.test_freq=-1", "trainer.save_final=false",
        "trainer.logger=[jsonl]", f"trainer.default_local_dir={out}", f"trainer.n_gpus_per_node={workers}",
        f"actor_rollout_ref.rollout.name={rollout}", "actor_rollout_ref.rollout.cpu_kv_cache_gb=0.25")
    with WorkerEnvProbe() as probe:
        run_ppo(cfg)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["step"] > args.warmup]
    med = lambda k: statistics.median(r.get(k, 0.0) for r in rows)  # noqa: E731
    return {"step": med("timing_s/step"), "phases": {p: med(f"timing_s/{p}") for p in PHASES},
            "overhead": med("perf/controller_overhead_s"), "tokens": med("perf/total_num_tokens"),
            "score": rows[-1]["critic/score/mean"], "worker_env": probe.summary(),
            "gradient_checkpointing": cfg.actor_rollout_ref.model.enable_gradient_checkpointing}


def run_trl(model_path: str, data: dict, args, out: Path, use_vllm: bool = False) -> dict:
    """TRL's GRPOTrainer tuned for this machine (see the module's docstring); call it in a fresh process."""
    import datasets
    import torch
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
        content = [{"type": "image"}, {"type": "text", "text": text}]
        records["prompt"].append([{"role": "user", "content": content}])
        records["image"].append(Image.open(io.BytesIO(row["images"][0]["bytes"])).convert("RGB"))
        records["answer"].append(row["reward_model"]["ground_truth"])
    dataset = datasets.Dataset.from_dict(records)
    processor = load_processor(model_path)
    vocab = processor.tokenizer.get_vocab()

    torch.set_num_threads(os.cpu_count() or 1)

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.times, self.threads, self.last = [], set(), None

        def on_step_begin(self, *a, **k):
            self.threads.add(torch.get_num_threads())
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
        # tuned: no activation recompute in the backward pass (GRPOConfig's default is on); generate with
        # the KV cache (a static cache measured no faster here without torch.compile, which TRL disables)
        gradient_checkpointing=False, cache_implementation=None, dataloader_pin_memory=False,
        generation_kwargs={"suppress_tokens": [vocab[t] for t in VISION_SPECIAL_TOKENS if t in vocab],
                           "use_cache": True},
        dataloader_num_workers=0, seed=1,
        **({"use_vllm": True, "vllm_mode": "colocate"} if use_vllm else {}))
    model = AutoModelForImageTextToText.from_pretrained(model_path)
    trainer = GRPOTrainer(model=model, reward_funcs=[shapes_reward], args=config, train_dataset=dataset,
                          processing_class=processor, callbacks=[timer])
    trainer.train()
    return {"step": statistics.median(timer.times[args.warmup:]), "threads": sorted(timer.threads),
            "tuned_env": has_tuned_env(exec_env_of()),
            "gradient_checkpointing": trainer.args.gradient_checkpointing,
            "use_cache": trainer.generation_config.use_cache,
            "cache": trainer.generation_config.cache_implementation or "dynamic",
            "generation": "vLLM colocate" if use_vllm else "HF generate"}


def run_trl_fresh(*args, **kwargs) -> dict:
    """run_trl in a new interpreter: nothing left over from Ray's driver, the environment set at start."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(run_trl, *args, **kwargs).result()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
    trl = {"hf": run_trl_fresh(model_path, data, args, work / "trl")}
    if has_vllm:
        try:
            trl["vllm"] = run_trl_fresh(model_path, data, args, work / "trl_vllm", use_vllm=True)
        except Exception as e:  # noqa: BLE001 - reported in the table's notes, HF stays TRL's best
            notes.append(f"TRL with vLLM (colocate) did not run here: {type(e).__name__}: {str(e)[:300]}")
    else:
        notes.append("vLLM is not installed in this environment: both sides' best is HF generate")

    hf_runs = {w: run for (rollout, w), run in runs.items() if rollout == "hf"}
    ours_key = min(runs, key=lambda k: runs[k]["step"])
    ours, trl_best = runs[ours_key], min(trl, key=lambda k: trl[k]["step"])
    update_s = ours["phases"]["update_actor"]
    mfu = 6 * n_params * ours["tokens"] / max(update_s, 1e-9) / peak
    print(f"\n## verlvl vs TRL GRPOTrainer tuned ({n_params / 1e6:.1f}M-parameter Qwen2.5-VL, "
          f"{args.prompts} prompts x {args.n} samples x {args.response_length} new tokens, "
          f"{os.cpu_count()} CPU cores)\n")
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
    print("\n| verlvl phase | "
          + " | ".join(f"{k[0]}, {k[1]} worker(s): s (share)" for k, _ in shown.values())
          + " |\n|---|" + "---|" * len(shown))
    for phase in PHASES:
        print(f"| {phase} | " + " | ".join(f"{r['phases'][phase]:.3f} ({r['phases'][phase] / r['step']:.0%})"
                                           for _, r in shown.values()) + " |")
    print("| controller overhead | " + " | ".join(f"{r['overhead']:.3f} ({r['overhead'] / r['step']:.0%})"
                                                  for _, r in shown.values()) + " |")
    print("| step | " + " | ".join(f"{r['step']:.3f}" for _, r in shown.values()) + " |")
    print(f"\nmatmul peak (fp32, measured): {peak / 1e9:.1f} GFLOP/s; verlvl training-phase MFU: {mfu:.1%} "
          f"(6 x params x {ours['tokens']:.0f} tokens / update_actor time)")
    print_settings(runs, trl)


def yes(flag) -> str:
    return "on" if flag else "off"


def print_settings(runs: dict, trl: dict) -> None:
    """What each side ran with, as observed in its processes where that can be read."""
    env = " ".join(f"{k}={v}" for k, v in TUNED_ENV.items())
    print(f"\n### Settings (fp32 on both sides; allocator settings: {env})\n\n| side | settings |\n|---|---|")
    driver_env = yes(has_tuned_env(exec_env_of()))
    print(f"| driver (verlvl controller) | allocator settings from process start: {driver_env} |")
    for (rollout, workers), run in runs.items():
        threads = max(1, (os.cpu_count() or 1) // workers)
        print(f"| verlvl, {rollout} rollout, {workers} worker(s) | {workers} Ray worker(s) x {threads} torch "
              f"thread(s) (cores / workers); allocator settings: {run['worker_env']}; gradient checkpointing "
              f"{yes(run['gradient_checkpointing'])} |")
    for name, run in trl.items():
        print(f"| TRL, {run['generation']} | fresh process; torch threads during training: "
              f"{', '.join(map(str, run['threads']))}; allocator settings from process start: "
              f"{yes(run['tuned_env'])}; gradient checkpointing {yes(run['gradient_checkpointing'])}; "
              f"generate's KV cache {yes(run['use_cache'])} ({run['cache']}); TRL's transformers continuous "
              "batching refuses multimodal models |")


if __name__ == "__main__":
    if not has_tuned_env():  # glibc reads these at process start: run again with them in the environment
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **TUNED_ENV})
    main()
