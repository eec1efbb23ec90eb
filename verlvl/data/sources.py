"""Data sources for data.train_files / data.val_files: parquet, JSON/JSONL, `save_to_disk` folders, file folders, `name@split`."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from verlvl.data.images import DataError

FILE_TYPES = (".parquet", ".jsonl", ".json")
IMAGE_COLUMNS = ("images", "image")


def split_spec(spec: str) -> tuple[str, str | None]:
    """EasyR1's `name@split` (a hub id or a local folder) -> (name, split); a plain path has no split. An '@'
    that belongs to an existing path is part of the path."""
    if "@" not in spec or Path(spec).expanduser().exists():
        return spec, None
    name, split = spec.rsplit("@", 1)
    return name, (split or None)


def looks_like_hub_id(name: str) -> bool:
    """`owner/name` or `name` with no path syntax: what load_dataset resolves on the hub."""
    parts = name.split("/")
    return (0 < len(parts) <= 2 and all(parts) and not name.startswith((".", "~", "/"))
            and not name.endswith(FILE_TYPES))


def exists(spec: str) -> bool:
    """What the config check asks before anything loads: a data file or folder, or a `name@split` hub id (which
    only the load can check, and names in its error when it fails)."""
    name, split = split_spec(spec)
    path = Path(name).expanduser()
    if path.is_file() or path.is_dir():
        return True
    return split is not None and looks_like_hub_id(name)


def read_source(spec: str) -> pa.Table:
    """One source as an arrow table in the parquet schema (images stay encoded); errors name the source."""
    name, split = split_spec(spec)
    path = Path(name).expanduser()
    if path.is_file():
        if split is not None:
            raise DataError(f"{spec}: a file has no splits; give {name} alone")
        return read_file(path, spec)
    if path.is_dir():
        return read_folder(path, split, spec)
    if split is not None and looks_like_hub_id(name):
        return read_hub(name, split, spec)
    raise DataError(f"data file {spec} does not exist; write it with a data_preprocess/ script (e.g. python "
                    "data_preprocess/geo3k.py) or fix the path (a hub dataset is written name@split)")


def read_file(path: Path, spec: str) -> pa.Table:
    suffix = path.suffix.lower()
    if suffix not in FILE_TYPES:
        raise DataError(f"{spec}: unknown data file type {suffix or '(none)'}; use .parquet, .json or .jsonl, or a "
                        "datasets save_to_disk folder")
    try:
        if suffix == ".parquet":
            return pq.read_table(path)
    except Exception as e:
        raise DataError(f"{spec}: not a readable parquet file ({type(e).__name__}: {e})") from e
    return _with_local_image_paths(_read_json(path, spec), path.parent)


def json_records(path: Path, spec: str) -> list:
    """The records of a JSON file (a list) or a JSON-lines file; a bad line is a DataError naming it."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{spec}: not valid JSON (line {e.lineno}: {e.msg})") from e
    rows = []  # JSON lines (also a .json file written one record per line, as datasets' to_json does)
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{spec} line {n}: not valid JSON ({e.msg})") from e
    return rows


def _read_json(path: Path, spec: str) -> pa.Table:
    rows = json_records(path, spec)
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
    if bad is not None:
        raise DataError(f"{spec}: record {bad} is a {type(rows[bad]).__name__}, not an object with columns")
    try:
        return pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise DataError(f"{spec}: a column holds values of different types across records ({e})") from e


def _with_local_image_paths(table: pa.Table, folder: Path) -> pa.Table:
    """Image paths relative to a JSON file's folder become absolute (EasyR1's JSON sets keep images beside)."""
    column = next((c for c in IMAGE_COLUMNS if c in table.column_names), None)
    if column is None:
        return table

    def fix(value):
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, str) and not Path(value).is_absolute() and (folder / value).is_file():
            return str(folder / value)
        if isinstance(value, dict) and value.get("bytes") is None and isinstance(value.get("path"), str):
            return {**value, "path": fix(value["path"])}
        return value

    values = [fix(v) for v in table.column(column).to_pylist()]
    try:
        return table.set_column(table.column_names.index(column), column, pa.array(values))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return table


def read_folder(path: Path, split: str | None, spec: str) -> pa.Table:
    """A `save_to_disk` folder (Dataset, or DatasetDict with a split), or a folder of data files (a hub
    dataset's clone: data/train-00000-of-00001.parquet; a split picks the files named after it)."""
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        return _read_saved(path, split, spec)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FILE_TYPES
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise DataError(f"{spec}: the folder holds no .parquet/.json/.jsonl files and is not a datasets "
                        "save_to_disk folder")
    splits = sorted({_split_of(p, path) for p in files} - {None})
    if split is not None:
        files = [p for p in files if _split_of(p, path) == split]
        if not files:
            raise DataError(f"{spec}: no files of split {split!r} in {path} (splits found: {splits or 'none'})")
    elif len(splits) > 1:
        raise DataError(f"{spec}: the folder holds the splits {splits}: pick one as {spec}@{splits[0]}")
    tables = [read_file(p, str(p)) for p in files]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise DataError(f"{spec}: the files {[str(p) for p in files]} have incompatible columns: {e}") from e


def _split_of(file: Path, root: Path) -> str | None:
    """`train` for data/train-00000-of-00001.parquet, train.jsonl or train/part-0.parquet."""
    stem = file.name.split(".")[0]
    name = stem.split("-")[0]
    for candidate in [name, *file.relative_to(root).parts[:-1]]:
        if candidate in ("train", "test", "validation", "val", "dev", "eval") or candidate.startswith("train"):
            return candidate
    return None


def _read_saved(path: Path, split: str | None, spec: str) -> pa.Table:
    import datasets

    try:
        data = datasets.load_from_disk(str(path))
    except Exception as e:
        raise DataError(f"{spec}: not a readable datasets save_to_disk folder ({type(e).__name__}: {e})") from e
    if isinstance(data, datasets.DatasetDict):
        names = list(data)
        if split is None and len(names) == 1:
            split = names[0]
        if split is None:
            raise DataError(f"{spec}: a DatasetDict with the splits {names}: pick one as {spec}@{names[0]}")
        if split not in data:
            raise DataError(f"{spec}: no split {split!r} (the folder has {names})")
        data = data[split]
    elif split is not None:
        raise DataError(f"{spec}: the folder holds one Dataset without splits; give {path} alone")
    return _arrow(data)


def read_hub(name: str, split: str, spec: str) -> pa.Table:
    import datasets

    try:
        data = datasets.load_dataset(name, split=split)
    except Exception as e:
        raise DataError(f"{spec}: could not load split {split!r} of the hub dataset {name!r} ({type(e).__name__}: "
                        f"{str(e)[:300]}). Without hub access, save it elsewhere (datasets save_to_disk, or the "
                        "parquet files) and give the local folder") from e
    return _arrow(data)


def _arrow(data) -> pa.Table:
    """The rows of a datasets.Dataset as arrow, images still encoded ({'bytes', 'path'} structs)."""
    return data.flatten_indices().data.table if data._indices is not None else data.data.table
