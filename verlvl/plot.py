"""`python -m verlvl.plot RUN_DIR`: PNG plots of a run's metrics.jsonl (reward, length, KL, entropy, time)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

PANELS = [  # (title, metric keys drawn in that panel)
    ("reward", ["critic/score/mean", "val-core/*/mean@*"]),
    ("response length", ["response_length/mean", "response_length/max"]),
    ("KL", ["actor/kl_loss", "actor/ppo_kl", "actor/reward_kl_penalty"]),
    ("entropy", ["actor/entropy"]),
    ("gradient norm", ["actor/grad_norm", "critic/grad_norm"]),
    ("time per phase (s)", ["timing_s/gen", "timing_s/reward", "timing_s/old_log_prob", "timing_s/ref",
                            "timing_s/values", "timing_s/adv", "timing_s/update_actor", "timing_s/update_critic"]),
]


def load_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl" if run_dir.is_dir() else run_dir
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: train with trainer.logger including jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    latest: dict[int, dict] = {}
    for row in rows:  # a resumed run appends: the later line for a step wins
        latest.setdefault(row["step"], {}).update(row)
    return [latest[s] for s in sorted(latest)]


def _matching(pattern: str, keys) -> list[str]:
    if "*" not in pattern:
        return [pattern] if pattern in keys else []
    import fnmatch

    return sorted(k for k in keys if fnmatch.fnmatch(k, pattern))


def plot(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """One PNG per panel with data, plus overview.png with all of them; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = load_metrics(run_dir)
    out = Path(out_dir) if out_dir else (run_dir if run_dir.is_dir() else run_dir.parent) / "plots"
    out.mkdir(parents=True, exist_ok=True)
    keys = {k for r in rows for k in r}
    panels = [(title, [k for p in patterns for k in _matching(p, keys)]) for title, patterns in PANELS]
    panels = [(t, ks) for t, ks in panels if ks]
    written = []
    if not panels:
        return written
    cols = 2
    fig, axes = plt.subplots(math.ceil(len(panels) / cols), cols, figsize=(12, 3.2 * math.ceil(len(panels) / cols)),
                             squeeze=False)
    for ax, (title, series) in zip(axes.flat, panels):
        single, sax = plt.subplots(figsize=(6, 3.5))
        for target in (ax, sax):
            for key in series:
                points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
                if points:
                    marker = "o" if key.startswith("val") else None
                    target.plot(*zip(*points), label=key, marker=marker, markersize=3)
            target.set_title(title)
            target.set_xlabel("step")
            target.grid(alpha=0.3)
            target.legend(fontsize=7)
        single.tight_layout()
        path = out / f"{title.split(' (')[0].replace(' ', '_')}.png"
        single.savefig(path, dpi=110)
        plt.close(single)
        written.append(path)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(str(run_dir))
    fig.tight_layout()
    fig.savefig(out / "overview.png", dpi=110)
    plt.close(fig)
    written.append(out / "overview.png")
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", help="trainer.default_local_dir of a run (holds metrics.jsonl)")
    parser.add_argument("--out", default=None, help="where the PNGs go (default: RUN_DIR/plots)")
    args = parser.parse_args(argv)
    for path in plot(args.run_dir, args.out):
        print(path)


if __name__ == "__main__":
    main()
