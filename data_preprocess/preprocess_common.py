"""Shared by the data_preprocess scripts: read a hub dataset or a local copy, build veRL rows, report skips."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tarfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the scripts import each other by name

from geo3k import image_to_bytes

from verlvl.data.sources import json_records

R1_SYSTEM_PROMPT = ("You are a helpful assistant. You first think about the reasoning process in the mind and then "
                    "provide the user with the answer. The reasoning process and answer are enclosed within "
                    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process "
                    "here </think><answer> answer here </answer>")
FILE_SUFFIXES = {".parquet": "parquet", ".json": "json", ".jsonl": "json"}


class SkipRow(Exception):
    """A source row the script cannot convert: `reason` is what gets counted, `detail` what gets shown."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


class SkipReport:
    """Every skipped row with its split and index; printed as it happens (the first 20 per reason) and as
    counts per reason at the end, and written to skipped.json beside the output."""

    SHOWN_PER_REASON = 20

    def __init__(self):
        self.rows: dict[str, list[dict]] = defaultdict(list)

    def skip(self, split: str, index: int, error: SkipRow) -> None:
        entries = self.rows[error.reason]
        entries.append({"split": split, "index": index, "detail": error.detail})
        if len(entries) <= self.SHOWN_PER_REASON:
            print(f"skipped {split} row {index}: {error.reason}" + (f" ({error.detail})" if error.detail else ""))

    def counts(self) -> Counter:
        return Counter({reason: len(rows) for reason, rows in self.rows.items()})

    def summary(self, save_dir: Path) -> None:
        if not self.rows:
            print("skipped rows: none")
            return
        total = sum(self.counts().values())
        print(f"skipped rows: {total} (every one is listed in {save_dir / 'skipped.json'})")
        for reason, n in self.counts().most_common():
            print(f"  {n:6d}  {reason}")
        (save_dir / "skipped.json").write_text(json.dumps(self.rows, indent=1, default=str))


def base_parser(description: str, default_save_dir: str) -> argparse.ArgumentParser:
    """geo3k.py's command line: --local_dataset_path (a local copy instead of the hub) and --local_save_dir."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--local_dataset_path", default=None,
                        help="a local copy instead of the hub: a clone of the hub repository, a save_to_disk folder, "
                             "or a parquet / JSON / JSONL file")
    parser.add_argument("--local_save_dir", default=os.path.join("~", "data", default_save_dir),
                        help="where the split parquet files go")
    parser.add_argument("--local_dir", default=None, help=argparse.SUPPRESS)  # veRL's older name
    return parser


def save_dir_of(args) -> str:
    return args.local_dir or args.local_save_dir


# ---------------------------------------------------------------------------------------------- loading
def load_source(hub_name: str, local_path: str | None, config: str | None = None,
                data_files: str | list[str] | None = None, single_split: str = "train") -> dict:
    """Splits of the dataset, by name: `hub_name` from the hub, or a local copy of it. A single file (or
    `data_files` inside a clone) becomes the split `single_split`. Rows come out as dicts."""
    import datasets

    if not local_path:
        if data_files:
            return dict(datasets.load_dataset(hub_name, data_files=data_files))
        return dict(datasets.load_dataset(hub_name, config))
    path = Path(local_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"--local_dataset_path {local_path}: no such file or folder")
    if path.is_file():
        return {single_split: read_file(path)}
    if (path / "dataset_dict.json").exists():
        return dict(datasets.load_from_disk(str(path)))
    if (path / "state.json").exists() and (path / "dataset_info.json").exists():
        return {"train": datasets.load_from_disk(str(path))}
    if data_files:
        files = [data_files] if isinstance(data_files, str) else data_files
        missing = [f for f in files if not (path / f).exists()]
        if missing:
            raise FileNotFoundError(f"--local_dataset_path {local_path}: the copy lacks {missing} (expected the "
                                    f"files of {hub_name})")
        return {single_split: [row for f in files for row in read_file(path / f)]}
    try:
        try:
            return dict(datasets.load_dataset(str(path), config))
        except ValueError:  # a copy without the hub's configs: read its files as they are
            if config is None:
                raise
            return dict(datasets.load_dataset(str(path)))
    except ValueError as e:
        raise ValueError(f"--local_dataset_path {local_path}: datasets cannot read it as {hub_name}"
                         f"{f' (config {config})' if config else ''}: {e}") from e


def read_file(path: Path) -> list[dict]:
    """Rows of one parquet, JSON (a list of objects) or JSONL file, as dicts; a bad line names the file and line."""
    kind = FILE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: unsupported file type; give a parquet, .json or .jsonl file or a dataset folder")
    if kind == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    return json_records(path, str(path))  # a DataError (a ValueError) names the file and line


def column_names(data) -> list[str]:
    if hasattr(data, "column_names"):
        return list(data.column_names)
    return list(data[0]) if len(data) else []


def require_columns(data, split: str, required: Iterable[str], layout: str) -> None:
    missing = [c for c in required if c not in column_names(data)]
    if missing:
        raise ValueError(f"the {split} split lacks column(s) {missing}; it has {column_names(data)}. Expected the "
                         f"layout of {layout}")


def pick_splits(source: dict, wanted: Iterable[str], dataset: str) -> dict:
    out = {s: source[s] for s in wanted if s in source}
    if not out:
        raise ValueError(f"the source has none of the splits {list(wanted)} (it has {list(source)}); {dataset} "
                         "needs them")
    return out


def hold_out(n_rows: int, test_size: float, seed: int = 42) -> tuple[list[int], list[int]]:
    """(train, test) row indices by a seeded shuffle: test_size < 1 is a fraction, >= 1 a row count."""
    n_test = round(n_rows * test_size) if test_size < 1 else min(int(test_size), n_rows)
    order = list(range(n_rows))
    random.Random(seed).shuffle(order)
    test = set(order[:n_test])
    return [i for i in range(n_rows) if i not in test], sorted(test)


def convert_with_test(source: dict, make_row, report: SkipReport, test_size: float,
                      seed: int = 42) -> dict[str, list[dict]]:
    """train/test rows: the source's own train and test splits, or, for a one-split source, `test_size` of
    its rows held out (seeded). Indices in reports and extra_info are those of the source split."""
    if "test" in source and "train" in source:
        return {s: convert_split(source[s], make_row, s, report) for s in ("train", "test")}
    if len(source) != 1:
        raise ValueError(f"the source has splits {list(source)}; expected one split, or train and test")
    data = next(iter(source.values()))
    train, test = hold_out(len(data), test_size, seed)
    out = {"train": convert_split([data[i] for i in train], make_row, "train", report, train)}
    if test:
        out["test"] = convert_split([data[i] for i in test], make_row, "test", report, test)
    return out


# ---------------------------------------------------------------------------------------------- rows
def verl_row(data_source: str, messages: list[dict], images: list | None, ability: str, ground_truth: str,
             extra_info: dict) -> dict:
    """One row of veRL's schema; `images` None for text-only datasets (no images column, as veRL's gsm8k)."""
    row = {"data_source": data_source, "prompt": messages}
    if images is not None:
        row["images"] = images
    row.update({"ability": ability, "reward_model": {"style": "rule", "ground_truth": ground_truth},
                "extra_info": extra_info})
    return row


def lettered_options(options: list) -> str:
    """'(A) first\\n(B) second ...' as dmmrl writes the choices."""
    return "\n".join(f"({chr(ord('A') + k)}) {option}" for k, option in enumerate(options))


def convert_split(rows, make_row: Callable[[dict, int, str], dict | list[dict]], split: str,
                  report: SkipReport, indices: list[int] | None = None) -> list[dict]:
    """make_row over every source row; a SkipRow is reported with the row's index (its place in the source
    split, or `indices[k]` when rows are a subset), never dropped silently."""
    out = []
    for k, example in enumerate(rows):
        index = indices[k] if indices is not None else k
        try:
            made = make_row(example, index, split)
        except SkipRow as e:
            report.skip(split, index, e)
            continue
        out.extend(made if isinstance(made, list) else [made])
    return out


def write_splits(save_dir: str, splits: dict[str, list[dict]], report: SkipReport) -> dict[str, str]:
    """Each split as <save_dir>/<split>.parquet; then the skip summary. An empty split is an error."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    save = Path(save_dir).expanduser()
    save.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, rows in splits.items():
        if not rows:
            report.summary(save)
            raise ValueError(f"no row of the {split} split could be converted; see the skipped rows above")
        path = save / f"{split}.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
        out[split] = str(path)
        print(f"wrote {len(rows)} rows to {path}")
    report.summary(save)
    return out


# ---------------------------------------------------------------------------------------------- images
class ImageFinder:
    """Image bytes for a path written in a dataset (absolute, file://, or relative to the copy), looked up
    in the copy's folder and inside its image tarballs (e.g. VerMulti's *_img.tar.gz) without unpacking."""

    def __init__(self, root: Path | None):
        self.root = root
        self._members: dict[str, tuple[Path, str]] | None = None

    def _tar_members(self) -> dict[str, tuple[Path, str]]:
        if self._members is None:
            self._members = {}
            for tar in sorted(self.root.glob("*.tar*")) if self.root else []:
                with tarfile.open(tar) as t:
                    for m in t.getmembers():
                        if m.isfile():
                            self._members.setdefault(m.name.lstrip("./"), (tar, m.name))
        return self._members

    def read(self, ref: str) -> dict:
        """{'bytes': ...} for `ref`; SkipRow('image file not found') when it is nowhere."""
        name = ref.removeprefix("file://")
        candidates = [Path(name)] + ([self.root / name.lstrip("/")] if self.root else [])
        for candidate in candidates:
            if candidate.is_file():
                return {"bytes": candidate.read_bytes()}
        parts = Path(name).parts
        members = self._tar_members()
        for k in range(len(parts)):  # the longest tail of the path that a tarball or the folder holds
            tail = "/".join(parts[k:])
            if tail in members:
                tar, member = members[tail]
                with tarfile.open(tar) as t:
                    return {"bytes": t.extractfile(member).read()}
            if self.root and (self.root / tail).is_file():
                return {"bytes": (self.root / tail).read_bytes()}
        raise SkipRow("image file not found", ref)


def image_cell_to_bytes(value, finder: ImageFinder | None = None) -> dict:
    """A datasets image cell, PIL image, raw bytes or a path string as {'bytes': ...}."""
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": bytes(value)}
    if isinstance(value, str):
        return (finder or ImageFinder(None)).read(value)
    return image_to_bytes(value)


# ---------------------------------------------------------------------------------------------- chat JSON
def openai_messages(raw, finder: ImageFinder | None) -> tuple[list[dict], list[dict]]:
    """LMM-R1 / OpenRLHF's `message` (a JSON string or list of {'role', 'content'}; content a string or
    a list of {'type': 'image'|'text'} parts) as veRL chat messages with one <image> tag per image, and
    the images' bytes in order."""
    try:
        messages = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as e:
        raise SkipRow("message is not valid JSON", str(e)) from e
    if not isinstance(messages, list) or not all(isinstance(m, dict) and "content" in m for m in messages):
        raise SkipRow("message is not a list of chat messages", type(messages).__name__)
    out, images = [], []
    for m in messages:
        content = m["content"]
        if isinstance(content, list):
            pieces = []
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "image":
                    images.append(image_cell_to_bytes(part.get("image") or part.get("image_url"), finder))
                    pieces.append("<image>")
                elif kind == "text":
                    pieces.append(part.get("text") or "")
                else:
                    raise SkipRow("message part is neither text nor image", repr(part)[:80])
            content = "".join(pieces)
        out.append({"role": m.get("role", "user"), "content": str(content)})
    return out, images


def messages_row_maker(data_source: str, text_only: bool, finder: ImageFinder | None, ability: str = "math"):
    """make_row for LMM-R1's layout: {'message': chat JSON, 'answer': str} -> a veRL row (images in order)."""

    def make_row(example: dict, index: int, split: str) -> dict:
        answer = str(example.get("answer") or "").strip()
        if not answer:
            raise SkipRow("no answer")
        messages, images = openai_messages(example.get("message"), finder)
        if text_only and images:
            raise SkipRow("image in a text-only set", f"{len(images)} image(s)")
        question = next((m["content"] for m in messages if m["role"] == "user"), "")
        return verl_row(data_source, messages, None if text_only else images, ability, answer,
                        {"split": split, "index": index, "answer": answer, "question": question.replace("<image>", "")})

    return make_row


def convert_messages(source: dict, save_dir: str, data_source: str, test_size: float, text_only: bool,
                     finder: ImageFinder | None = None) -> dict[str, str]:
    """LMM-R1 / OpenRLHF message datasets (deepscaler, VerMulti, mathlv345) to train/test parquet."""
    for split, data in source.items():
        require_columns(data, split, ("message", "answer"), "LMM-R1's message format (message, answer)")
    report = SkipReport()
    splits = convert_with_test(source, messages_row_maker(data_source, text_only, finder), report, test_size)
    return write_splits(save_dir, splits, report)
