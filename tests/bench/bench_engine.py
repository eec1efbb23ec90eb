"""Benchmark of verlvl/engine: memory of loading on 2 ranks and of the log-prob maths; padding computed."""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import socket
import sys
import tempfile
import threading
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing import get_context
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from verlvl.models.tiny import TinyVLConfig, build_tiny_qwen_vl  # noqa: E402

# ~92M parameters (352 MiB in fp32): big enough that loading dominates what the imports left behind.
LOAD_MODEL = TinyVLConfig(hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
                          num_attention_heads=16, num_key_value_heads=4, vision_hidden_size=128,
                          vision_heads=4, vision_depth=2, vision_intermediate_size=256, seed=0)
QWEN_VOCAB = 152064  # Qwen2.5-VL's text_config.vocab_size
LOAD_WAYS = {"broadcast": "load_sharded: all build on meta, rank 0 reads as released, broadcast into shards",
             "every_rank": "old: every rank load_model(path), then apply_fsdp2"}


# ---------------------------------------------------------------------------------------------- memory probes
def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak_rss() -> None:
    """Resets the kernel's high-water mark of this process's RSS (VmHWM) to its current RSS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # VmHWM then counts from the process's start, still its own (ru_maxrss survives exec, VmHWM not)


class PeakMemory:
    """Peak growth of this process's memory inside the block: `anon`, private memory (RssAnon), and `file`,
    resident pages of mapped files (a safetensors checkpoint: page cache that processes mapping the same
    file share), both sampled every few ms; `rss`, all resident pages, from the kernel's exact high-water
    mark (VmHWM, reset on entry)."""

    def __init__(self, interval_s: float = 0.003):
        self.interval_s, self.anon, self.file, self.rss = interval_s, 0, 0, 0

    def __enter__(self):
        gc.collect()
        _reset_peak_rss()
        self._start = {k: _status_bytes(k) for k in ("RssAnon", "RssFile", "VmRSS")}
        self._peak = {k: 0 for k in self._start}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _read(self):
        for k in self._peak:
            self._peak[k] = max(self._peak[k], _status_bytes(k))

    def _sample(self):
        while not self._stop.is_set():
            self._read()
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._read()
        self.anon = self._peak["RssAnon"] - self._start["RssAnon"]
        self.file = self._peak["RssFile"] - self._start["RssFile"]
        self.rss = max(_status_bytes("VmHWM"), self._peak["VmRSS"]) - self._start["VmRSS"]


def in_fresh_process(fn, *args):
    """fn(*args) in a new interpreter, so that its peak memory is its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------- 1. loading on 2 ranks
def _load(way: str, path: str):
    from verlvl.engine.fsdp import apply_fsdp2
    from verlvl.engine.loading import load_model, load_sharded, release_dtype

    if way == "broadcast":
        return load_sharded(lambda empty: load_model(path, empty=empty), lambda m: apply_fsdp2(m), "cpu",
                            read_weights=lambda: load_model(path, dtype=release_dtype(path)).state_dict())
    return apply_fsdp2(load_model(path))


def _load_rank(rank: int, port: int, way: str, path: str, warmup_path: str, out_dir: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        _load(way, warmup_path)  # imports, FSDP and gloo set-up: not part of the measurement
        dist.barrier()
        with PeakMemory() as peak:
            model = _load(way, path)
            dist.barrier()
        local = sum(p.to_local().numel() * p.element_size() for p in model.parameters())
        Path(out_dir, f"{way}_rank{rank}.json").write_text(json.dumps(
            {"anon": peak.anon, "file": peak.file, "rss": peak.rss, "local_param_bytes": local}))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def checkpoints(work: Path) -> dict[str, Path]:
    """The model saved in fp32 (loads zero-copy: parameters stay views of the mapped file until sharding)
    and in bf16, as Qwen releases its checkpoints (loading in fp32 converts: every reader holds a copy)."""
    from transformers import AutoModelForImageTextToText

    fp32 = build_tiny_qwen_vl(work / "model_fp32", LOAD_MODEL)
    bf16 = work / "model_bf16"
    AutoModelForImageTextToText.from_pretrained(fp32, dtype=torch.bfloat16).save_pretrained(bf16)
    return {"fp32": fp32, "bf16": bf16}


def bench_loading(work: Path) -> list[dict]:
    """Each way and checkpoint in 2 fresh gloo processes: each rank's peak memory growth while loading and
    sharding, against the model's fp32 size (what one rank would hold unsharded)."""
    import torch.multiprocessing as mp
    from safetensors import safe_open

    warmup = build_tiny_qwen_vl(work / "warmup_model", TinyVLConfig())
    rows = []
    for disk_dtype, path in checkpoints(work).items():
        with safe_open(str(path / "model.safetensors"), "pt") as f:
            size = 4 * sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
        for way, label in LOAD_WAYS.items():
            out = work / disk_dtype
            out.mkdir(exist_ok=True)
            mp.spawn(_load_rank, args=(_free_port(), way, str(path), str(warmup), str(out)), nprocs=2,
                     join=True)
            ranks = [json.loads((out / f"{way}_rank{r}.json").read_text()) for r in range(2)]
            rows.append({"way": way, "label": label, "disk_dtype": disk_dtype, "model_bytes": size,
                         "ranks": ranks,
                         **{f"{k}_x": sum(r[k] for r in ranks) / size for k in ("anon", "file", "rss")}})
    return rows


# ------------------------------------------------------------------ 2. log-prob / entropy maths, 152k vocab
def whole_vocab_log_probs(logits: torch.Tensor, tokens: torch.Tensor):
    """The old way: fp32 log_softmax over the whole (B, R, V) tensor, then gather and entropy on it."""
    log_p = torch.log_softmax(logits.float(), dim=-1)
    log_probs = log_p.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    return log_probs, entropy


def chunked_log_probs(logits: torch.Tensor, tokens: torch.Tensor, chunk_bytes: int | None = None):
    from verlvl.engine.logprob import CHUNK_BYTES, token_log_probs

    return token_log_probs(logits, tokens, calculate_entropy=True, chunk_bytes=chunk_bytes or CHUNK_BYTES)


SMALL_CHUNK = 32 << 20
LOG_PROB_WAYS = {"whole": whole_vocab_log_probs, "chunked": chunked_log_probs,
                 "chunked_small": partial(chunked_log_probs, chunk_bytes=SMALL_CHUNK)}


def _log_prob_peak(way: str, grad: bool, batch: int, length: int, vocab: int) -> dict:
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    tokens = torch.randint(vocab, (batch, length))
    whole_vocab_log_probs(torch.randn(1, 4, 8, requires_grad=True), tokens[:1, :4] % 8)  # autograd warm-up
    with PeakMemory() as peak:
        logits = torch.randn(batch, length, vocab, requires_grad=grad)  # the model's fp32 logits
        with torch.set_grad_enabled(grad):
            log_probs, entropy = LOG_PROB_WAYS[way](logits, tokens)
            if grad:  # a policy loss with an entropy bonus: gradients reach the logits through both
                (-log_probs.mean() - 0.01 * entropy.mean()).backward()
    return {"anon": peak.anon, "rss": peak.rss, "logits_bytes": logits.numel() * logits.element_size(),
            "log_probs": log_probs.detach(), "entropy": entropy.detach()}


def bench_log_probs(batch: int = 4, length: int = 512, vocab: int = QWEN_VOCAB) -> list[dict]:
    """Each way, no-grad (old_log_prob / ref) and forward+backward (update), in a fresh process."""
    rows = []
    for grad in (False, True):
        runs = {way: in_fresh_process(_log_prob_peak, way, grad, batch, length, vocab)
                for way in LOG_PROB_WAYS}
        size = runs["whole"]["logits_bytes"]
        rows.append({"grad": grad, "shape": (batch, length, vocab), "logits_bytes": size,
                     "unavoidable_x": 2.0 if grad else 1.0,  # the logits, and in the backward their gradient
                     **{f"{way}_x": max(r["anon"], r["rss"]) / size for way, r in runs.items()},
                     "max_diff": max((runs[way][k] - runs["whole"][k]).abs().max().item()
                                     for way in runs for k in ("log_probs", "entropy"))})
    return rows


# ------------------------------------------------------------------------- 3. tokens computed per real token
def geo3k_like_lengths(prompts: int = 64, n: int = 5, max_response_length: int = 2048, seed: int = 0):
    """Rows as one rank sees them (512 prompts x 5 samples over 8 GPUs = 320 rows): prompts of a few hundred
    tokens (a geometry diagram of 60-400 image tokens plus 60-200 text tokens), each repeated for its n
    samples; responses long-tailed, median ~330, from 50 to max_response_length (the cap truncates ~2%),
    longer for harder prompts."""
    from verlvl.engine.batching import RowLengths

    rng = random.Random(seed)
    prompt, response = [], []
    for _ in range(prompts):
        p = rng.randint(60, 400) + rng.randint(60, 200)
        difficulty = rng.lognormvariate(math.log(330), 0.5)
        for _ in range(n):
            prompt.append(p)
            response.append(int(min(max_response_length, max(50, difficulty * rng.lognormvariate(0, 0.6)))))
    return RowLengths(prompt, response)


def bench_padding(micro_size: int = 8, max_prompt_length: int = 1024, max_response_length: int = 2048,
                  max_token_len: int = 16384) -> tuple[list[dict], dict]:
    from verlvl.engine.batching import padding_ratio, plan_micro_batches

    lengths = geo3k_like_lengths(max_response_length=max_response_length)
    rows = len(lengths.prompt)
    real = sum(lengths.total(i) for i in range(rows))
    input_order = [list(range(i, min(rows, i + micro_size))) for i in range(0, rows, micro_size)]
    fixed = plan_micro_batches(lengths, micro_size)
    dynamic = plan_micro_batches(lengths, micro_size, use_dynamic_bsz=True, max_token_len=max_token_len)
    return [
        {"way": f"old: input order, {micro_size} rows, full width {max_prompt_length}+{max_response_length}",
         "ratio": rows * (max_prompt_length + max_response_length) / real, "micro_batches": len(input_order)},
        {"way": f"new fixed: length-sorted, {micro_size} rows, trimmed",
         "ratio": padding_ratio(lengths, fixed), "micro_batches": len(fixed)},
        {"way": f"new dynamic: length-sorted, <= {max_token_len} tokens, trimmed",
         "ratio": padding_ratio(lengths, dynamic), "micro_batches": len(dynamic)},
        {"way": "what-if: the fixed groups at width = their longest row (no gap between prompt and response)",
         "ratio": sum(len(g) * max(lengths.total(i) for i in g) for g in fixed) / real,
         "micro_batches": len(fixed)},
    ], {"rows": rows, "real_tokens": real, "median_response": sorted(lengths.response)[rows // 2],
        "truncated": sum(r >= max_response_length for r in lengths.response)}


# ----------------------------------------------------------------------------------------------- reporting
def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB"


def print_loading(rows: list[dict]) -> None:
    print(f"\n### Loading a model of {_mb(rows[0]['model_bytes'])} (fp32) on 2 gloo ranks, then FSDP2 "
          "sharding: peak memory growth per rank (private / mapped file pages)\n")
    print("| checkpoint on disk | way | rank 0 | rank 1 | sum private / model | sum RSS / model |\n"
          "|---|---|---|---|---|---|")
    for r in rows:
        per_rank = [f"{_mb(k['anon'])} / {_mb(k['file'])}" for k in r["ranks"]]
        print(f"| {r['disk_dtype']} | {r['label']} | {per_rank[0]} | {per_rank[1]} | {r['anon_x']:.2f}x | "
              f"{r['rss_x']:.2f}x |")
    print("\n(RSS counts the mapped checkpoint's page cache once per rank that maps it; the page cache "
          "itself is shared and reclaimable.)")


def print_log_probs(rows: list[dict]) -> None:
    b, r, v = rows[0]["shape"]
    print(f"\n### Log-probs + entropy, B={b} x R={r} x V={v}: peak memory growth / fp32 logits "
          f"({_mb(rows[0]['logits_bytes'])})\n")
    print(f"| pass | whole vocabulary (old) | token_log_probs (default chunks) | token_log_probs "
          f"({_mb(SMALL_CHUNK)} chunks) | unavoidable |\n|---|---|---|---|---|")
    for row in rows:
        label = "forward + backward (update)" if row["grad"] else "no grad (old_log_prob, ref)"
        print(f"| {label} | {row['whole_x']:.2f}x | {row['chunked_x']:.2f}x | "
              f"{row['chunked_small_x']:.2f}x | {row['unavoidable_x']:.0f}x |")
    print(f"\n(log-probs and entropies of all ways agree to {max(x['max_diff'] for x in rows):.1e})")


def print_padding(result) -> None:
    rows, info = result
    print(f"\n### Tokens computed per real token, geo3k-like mix ({info['rows']} rows, median response "
          f"{info['median_response']}, {info['truncated']} at the cap; goal <= 1.15 for the new ways)\n")
    print("| micro-batching | computed / real tokens | micro-batches |\n|---|---|---|")
    for r in rows:
        print(f"| {r['way']} | {r['ratio']:.2f} | {r['micro_batches']} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parts", default="loading,log_probs,padding")
    parser.add_argument("--batch", type=int, default=4, help="B of the log-prob maths")
    parser.add_argument("--length", type=int, default=512, help="R of the log-prob maths")
    args = parser.parse_args(argv)
    parts = args.parts.split(",")
    with tempfile.TemporaryDirectory(prefix="verlvl_bench_engine_") as work:
        loading = bench_loading(Path(work)) if "loading" in parts else None
    log_probs = bench_log_probs(args.batch, args.length) if "log_probs" in parts else None
    padding = bench_padding() if "padding" in parts else None
    print(f"\n## verlvl engine ({os.cpu_count()} CPU cores)")
    if loading:
        print_loading(loading)
    if log_probs:
        print_log_probs(log_probs)
    if padding:
        print_padding(padding)
    print("\n| measure | old way | new way | goal |\n|---|---|---|---|")
    for dtype in ("fp32", "bf16") if loading else ():
        new, old = (next(r for r in loading if r["disk_dtype"] == dtype and r["way"] == w) for w in LOAD_WAYS)
        print(f"| loading on 2 ranks ({dtype} checkpoint): sum of peak private memory / fp32 model | "
              f"{old['anon_x']:.2f}x | {new['anon_x']:.2f}x | ~1x |")
    if log_probs:
        for row in log_probs:
            label = "fwd+bwd" if row["grad"] else "no-grad"
            print(f"| log-probs+entropy {label}, peak / fp32 logits | {row['whole_x']:.2f}x | "
                  f"{row['chunked_x']:.2f}x | {row['unavoidable_x']:.0f}x |")
    if padding:
        old, fixed, dynamic = padding[0][:3]
        for label, new in (("fixed micro-batches", fixed), ("dynamic (16384)", dynamic)):
            print(f"| computed / real tokens, {label} | {old['ratio']:.2f} | {new['ratio']:.2f} | <= 1.15 |")


if __name__ == "__main__":
    main()
