"""Generation dumps: one JSONL file per step of prompts, responses, ground truths and rewards (veRL's
rollout_data_dir / validation_data_dir record), with each image written once beside them."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from verlvl.protocol import DataProto


def generation_records(batch: DataProto, tokenizer, scores, extra: dict, step: int,
                       rows: list[int] | None = None) -> list[dict]:
    """veRL's dump record for each chosen row (all by default): input, output, gts, score, step, and the
    reward's extra values; plus data_source, the row's file and row number, and its images (PIL, written
    by GenerationDump)."""
    rows = list(range(len(batch))) if rows is None else rows
    prompts, responses = batch.batch["prompts"], batch.batch["responses"]
    prompt_len = prompts.shape[-1]
    prompt_mask = batch.batch["attention_mask"][:, :prompt_len].bool()
    response_mask = batch.batch["response_mask"].bool()
    nt = batch.non_tensor_batch
    if "__num_turns__" in nt:  # multi-turn: the whole conversation after the prompt, tool turns included
        response_mask = batch.batch["attention_mask"][:, prompt_len:].bool()
    records = []
    for i in rows:
        media = nt["multi_modal_data"][i] if "multi_modal_data" in nt else None
        record = {
            "step": step,
            "input": tokenizer.decode(prompts[i][prompt_mask[i]].tolist(), skip_special_tokens=False),
            "output": tokenizer.decode(responses[i][response_mask[i]].tolist(), skip_special_tokens=True),
            "gts": ((nt["reward_model"][i] or {}).get("ground_truth") if "reward_model" in nt else None),
            "score": float(scores[i]),
            "data_source": str(nt["data_source"][i]) if "data_source" in nt else None,
            "row": str(nt["row_origin"][i]) if "row_origin" in nt else None,
            "images": list((media or {}).get("image") or []),
        }
        for key, values in extra.items():
            if key not in record and len(values) == len(batch):
                record[key] = _plain(values[i])
        records.append(record)
    return records


def _plain(value):
    if isinstance(value, (np.generic,)):
        return value.item()
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def collapse_prompt_text(text: str, placeholder: str = "<|image_pad|>") -> str:
    """A prompt with each run of image placeholders shown once (the expanded view has hundreds)."""
    while placeholder * 2 in text:
        text = text.replace(placeholder * 2, placeholder)
    return text


class GenerationDump:
    """Writes `<directory>/<step>.jsonl`; images go to `<directory>/images/<sha1>.png` once each and the
    records name them by that relative path."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.images = self.directory / "images"
        self.images.mkdir(parents=True, exist_ok=True)
        self._written: set[str] = {p.stem for p in self.images.glob("*.png")}
        self._steps: set[int] = set()  # steps this run wrote: a resumed run rewrites a crashed run's step

    def write(self, step: int, records: list[dict]) -> Path:
        """Write (or, for a step written before, e.g. several validation batches, add to) `<step>.jsonl`."""
        path = self.directory / f"{step}.jsonl"
        encoded: dict[int, str] = {}  # the n samples of a prompt share its image objects: one PNG each
        with open(path, "a" if step in self._steps else "w") as f:
            self._steps.add(step)
            for record in records:
                images = [self._image(img, encoded) for img in record.get("images", [])]
                record = dict(record, input=collapse_prompt_text(record["input"]), images=images)
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        return path

    def _image(self, image, encoded: dict[int, str]) -> str:
        if id(image) in encoded:
            return encoded[id(image)]
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data = buffer.getvalue()
        name = hashlib.sha1(data).hexdigest()
        if name not in self._written:
            (self.images / f"{name}.png").write_bytes(data)
            self._written.add(name)
        encoded[id(image)] = f"images/{name}.png"
        return encoded[id(image)]


class RunSamples:
    """A run's generations on disk: a few per step under RUN_DIR/samples/{train,val} (what the report
    shows), and every one under trainer.rollout_data_dir / validation_data_dir when they are set. Without a
    run directory or dump directories it writes nothing."""

    def __init__(self, run_dir: str | Path | None = None, rollout_data_dir: str | None = None,
                 validation_data_dir: str | None = None, per_step: dict[str, int] | None = None):
        self.few = {kind: GenerationDump(Path(run_dir) / "samples" / kind) for kind in ("train", "val")} \
            if run_dir is not None else {}
        self.every = {kind: GenerationDump(d) for kind, d in (("train", rollout_data_dir),
                                                              ("val", validation_data_dir)) if d}
        self.per_step = {"train": 4, "val": 4, **(per_step or {})}
        self._taken: dict[tuple[str, int], int] = {}

    def add(self, kind: str, step: int, batch: DataProto, tokenizer, scores, extra: dict) -> list[dict]:
        """Dump `batch` (all rows where asked, the first response to each of the first few prompts for the
        report) and return those few records (images as PIL images) for the trackers."""
        if kind in self.every:
            self.every[kind].write(step, generation_records(batch, tokenizer, scores, extra, step))
        taken = self._taken.get((kind, step), 0)
        uids = batch.non_tensor_batch.get("uid")
        firsts = [i for i in range(len(batch)) if uids is None or i == 0 or uids[i] != uids[i - 1]]
        rows = firsts[:max(0, self.per_step[kind] - taken)]
        if not rows:
            return []
        self._taken[(kind, step)] = taken + len(rows)
        records = generation_records(batch, tokenizer, scores, extra, step, rows)
        if kind in self.few:
            self.few[kind].write(step, records)
        return records
