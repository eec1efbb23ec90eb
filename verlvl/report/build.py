"""Collects a run folder's metrics, plots, config and sample dumps into report.html (images inlined)."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import logging
import time
from pathlib import Path

from verlvl.report.page import render_page

log = logging.getLogger(__name__)
DEFAULT_SAMPLES_PER_STEP = 4
DEFAULT_MAX_STEPS = 40  # per split, evenly spaced, first and last included: the page stays a few MB
SPLITS = ("val", "train")
THUMBNAIL = 384  # longest side of an image in the report, in pixels
RECORD_FIELDS = ("step", "input", "output", "gts", "score", "data_source", "row", "images")
SUMMARY_PREFIXES = ("training/global_step", "critic/score/mean", "val-core/", "response_length/mean",
                    "actor/entropy", "actor/kl_loss", "timing_s/step", "perf/throughput")


class ReportError(ValueError):
    """The run folder cannot make a report; the message names the folder or file."""


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


class ImageStore:
    """Each image file inlined once (downscaled to THUMBNAIL), however many samples show it."""

    def __init__(self):
        self.uris: dict[str, str] = {}
        self._keys: dict[Path, str | None] = {}
        self._by_content: dict[str, str] = {}
        self.missing: list[str] = []

    def key(self, path: Path, where: str) -> str | None:
        path = path.resolve()
        if path not in self._keys:
            self._keys[path] = self._load(path, where)
        return self._keys[path]

    def _load(self, path: Path, where: str) -> str | None:
        from PIL import Image

        try:
            raw = path.read_bytes()
            digest = hashlib.sha1(raw).hexdigest()
            if digest in self._by_content:  # the same picture dumped under two splits
                return self._by_content[digest]
            with Image.open(io.BytesIO(raw)) as image:
                image.load()
                if max(image.size) > THUMBNAIL:
                    image.thumbnail((THUMBNAIL, THUMBNAIL))
                if image.mode not in ("RGB", "RGBA", "L", "LA"):
                    image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
                buf = io.BytesIO()
                image.save(buf, format="PNG", optimize=True)
                data, mime = buf.getvalue(), "image/png"
                if len(data) > 32_000 and "A" not in image.getbands():  # a photo: JPEG is several times smaller
                    jpeg = io.BytesIO()
                    image.convert("RGB").save(jpeg, format="JPEG", quality=85)
                    if jpeg.tell() < len(data):
                        data, mime = jpeg.getvalue(), "image/jpeg"
        except (OSError, ValueError) as e:
            self.missing.append(f"{where}: image {path} cannot be read ({type(e).__name__}: {e})")
            return None
        key = f"i{len(self.uris)}"
        self.uris[key] = _data_uri(data, mime)
        self._by_content[digest] = key
        return key


def _pick(records: list[dict], k: int) -> list[dict]:
    """Up to k distinct samples (the same row, prompt, images and response count once), spread over the step's
    list (GRPO's n samples of a prompt sit together, so even spacing shows different prompts)."""
    seen, distinct = set(), []
    for r in records:
        ident = json.dumps([r.get(k) for k in ("input", "output", "images", "row")], default=str)
        if ident not in seen:
            seen.add(ident)
            distinct.append(r)
    return spread(distinct, k) if len(distinct) > k and k > 1 else distinct[:k]


def _read_jsonl(path: Path, problems: list[str]) -> list[dict]:
    records = []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"{path} line {n}: not JSON ({e.msg}); skipped")
            continue
        if not isinstance(record, dict):
            problems.append(f"{path} line {n}: not a JSON object; skipped")
            continue
        records.append(record)
    return records


def _score(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def spread(items: list, k: int) -> list:
    """At most k of items, evenly spaced, the first and the last kept."""
    if len(items) <= k:
        return items
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)] if k > 1 else items[-1:]


def collect_samples(folder: Path, k: int, images: ImageStore, problems: list[str],
                    max_steps: int = DEFAULT_MAX_STEPS) -> dict:
    """{"steps": [...], "samples": {step: [record]}, "stats": {step: {"n": .., "mean_score": ..}},
    "logged_steps": n} of one split (at most max_steps of its steps)."""
    steps, samples, stats = [], {}, {}
    files = []
    for path in folder.glob("*.jsonl") if folder.is_dir() else []:
        try:
            files.append((int(path.stem), path))
        except ValueError:
            problems.append(f"{path}: the name is not <step>.jsonl; skipped")
    logged = len(files)
    for step, path in spread(sorted(files), max_steps):
        records = _read_jsonl(path, problems)
        if not records:
            continue
        scores = [s for s in (_score(r.get("score")) for r in records) if s is not None]
        stats[step] = {"n": len(records), "mean_score": sum(scores) / len(scores) if scores else None}
        shown = []
        for i, r in enumerate(_pick(records, k)):
            paths = r.get("images") or []
            if isinstance(paths, str):
                paths = [paths]
            keys = [images.key(path.parent / p, f"{path} sample {i}") for p in paths]
            shown.append({"input": r.get("input"), "output": r.get("output"), "gts": r.get("gts"),
                          "score": r.get("score"), "data_source": r.get("data_source"), "row": r.get("row"),
                          "images": [x for x in keys if x], "missing_images": sum(x is None for x in keys),
                          "extras": {k2: v for k2, v in r.items() if k2 not in RECORD_FIELDS}})
        steps.append(step)
        samples[str(step)] = shown
    return {"steps": steps, "samples": samples, "stats": {str(s): v for s, v in stats.items()}, "logged_steps": logged}


def _plots(run_dir: Path, has_metrics: bool, problems: list[str]) -> list[tuple[str, str]]:
    folder = run_dir / "plots"
    if has_metrics and not list(folder.glob("*.png")):
        try:
            from verlvl.plot import plot

            plot(run_dir)
        except Exception as e:  # a report without plots still shows the samples
            problems.append(f"plotting {run_dir / 'metrics.jsonl'} failed: {type(e).__name__}: {e}")
    pngs = sorted(folder.glob("*.png"), key=lambda p: (p.name != "overview.png", p.name))
    return [(p.stem.replace("_", " "), _data_uri(p.read_bytes(), "image/png")) for p in pngs]


def _summary(rows: list[dict]) -> list[tuple[str, str, int]]:
    if not rows:
        return []
    last: dict = {}
    for row in rows:  # the latest value of every metric (validation runs only every test_freq steps)
        last.update({k: (row["step"], v) for k, v in row.items() if v is not None})
    out = []
    for key in sorted(last):
        if key != "step" and any(key.startswith(p) for p in SUMMARY_PREFIXES):
            step, value = last[key]
            out.append((key, f"{value:.4g}" if isinstance(value, float) else str(value), step))
    return out


def write_report(run_dir, out=None, samples_per_step: int = DEFAULT_SAMPLES_PER_STEP,
                 max_steps: int = DEFAULT_MAX_STEPS) -> Path:
    """Writes the run's report.html (or `out`) and returns its path."""
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir} is not a folder: give a run's trainer.default_local_dir")
    if samples_per_step < 1 or max_steps < 1:
        raise ReportError(f"--samples-per-step={samples_per_step}, --max-steps={max_steps}: show at least one")
    metrics_file, config_file = run_dir / "metrics.jsonl", run_dir / "config.yaml"
    has_samples = any((run_dir / "samples" / s).is_dir() for s in SPLITS)
    if not (metrics_file.exists() or config_file.exists() or has_samples or (run_dir / "plots").is_dir()):
        raise ReportError(f"{run_dir} has none of metrics.jsonl, plots/, config.yaml, samples/: is it a run folder "
                          "(trainer.default_local_dir)?")
    problems: list[str] = []
    rows = []
    if metrics_file.exists():
        from verlvl.plot import load_metrics

        try:
            rows = load_metrics(run_dir)
        except (json.JSONDecodeError, KeyError) as e:
            problems.append(f"{metrics_file}: unreadable ({type(e).__name__}: {e})")
    images = ImageStore()
    splits = {s: collect_samples(run_dir / "samples" / s, samples_per_step, images, problems, max_steps)
              for s in SPLITS}
    problems += images.missing
    plots = _plots(run_dir, bool(rows), problems)
    for p in problems:
        log.warning("report: %s", p)
    data = {"splits": splits, "images": images.uris}
    page = render_page(
        title=f"verlvl run report: {html.escape(run_dir.resolve().name)}",
        run_dir=str(run_dir.resolve()), generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        summary=_summary(rows), n_steps=len(rows), plots=plots,
        config=config_file.read_text(errors="replace") if config_file.exists() else None,
        data=data, problems=problems)
    target = Path(out) if out else run_dir / "report.html"
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(target)
    return target
