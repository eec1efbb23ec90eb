"""DataProto: the one batch type that crosses process boundaries (tensors, per-row Python objects, meta info)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from tensordict import TensorDict

__all__ = ["DataProto", "DataProtoItem", "pad_dataproto_to_divisor", "unpad_dataproto", "as_object_array"]


def as_object_array(values: Sequence[Any]) -> np.ndarray:
    """A 1-D object array holding `values` as they are (np.array would turn nested lists into 2-D)."""
    if isinstance(values, np.ndarray) and values.ndim == 1:
        return values
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


def _values_equal(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and bool(
            torch.equal(a, b)
        )
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return False
        return all(_values_equal(x, y) for x, y in zip(a.ravel(), b.ravel())) if a.dtype == object else bool(
            np.array_equal(a, b)
        )
    try:
        return bool(a == b)
    except Exception:  # objects whose == is ambiguous or raises are treated as different
        return False


def _index_to_tensor(index: Any, length: int) -> torch.Tensor:
    """Normalise a list / numpy / torch index (integer or boolean) to a 1-D LongTensor."""
    idx = torch.as_tensor(np.asarray(index) if not isinstance(index, torch.Tensor) else index)
    if idx.dtype == torch.bool:
        if idx.numel() != length:
            raise IndexError(f"boolean index has {idx.numel()} entries but the DataProto has {length} rows")
        idx = idx.nonzero().flatten()
    if idx.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"index must be integer or boolean, got {idx.dtype}")
    return idx.long().flatten()


@dataclass
class DataProtoItem:
    """One row of a DataProto."""

    batch: TensorDict | None = None
    non_tensor_batch: dict[str, Any] = field(default_factory=dict)
    meta_info: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataProto:
    """A batch of rows: `batch` (TensorDict, leading dim = rows), `non_tensor_batch` (dict of numpy
    object arrays of the same length), `meta_info` (small dict shared by all rows).

    Method names and arguments follow veRL's DataProto so code written for veRL ports unchanged.
    """

    batch: TensorDict | None = None
    non_tensor_batch: dict[str, np.ndarray] = field(default_factory=dict)
    meta_info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.non_tensor_batch = {k: as_object_array(v) if not isinstance(v, np.ndarray) else v
                                 for k, v in self.non_tensor_batch.items()}
        self.check_consistency()

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_dict(cls, tensors: dict[str, torch.Tensor] | None = None,
                  non_tensors: dict[str, Any] | None = None, meta_info: dict[str, Any] | None = None,
                  num_batch_dims: int = 1) -> "DataProto":
        tensors, non_tensors = tensors or {}, non_tensors or {}
        batch = None
        if tensors:
            batch_size, first_key = None, None
            for key, value in tensors.items():
                if not isinstance(value, torch.Tensor):
                    raise TypeError(f"tensors[{key!r}] is a {type(value).__name__}, not a torch.Tensor; "
                                    "put Python objects in non_tensors")
                if batch_size is None:
                    batch_size, first_key = value.shape[:num_batch_dims], key
                elif value.shape[:num_batch_dims] != batch_size:
                    raise ValueError(f"tensors[{key!r}] has leading shape {tuple(value.shape[:num_batch_dims])} "
                                     f"but tensors[{first_key!r}] has {tuple(batch_size)}: every tensor needs "
                                     "the same number of rows")
            batch = TensorDict(dict(tensors), batch_size=batch_size)
        return cls(batch=batch, non_tensor_batch=dict(non_tensors), meta_info=dict(meta_info or {}))

    @classmethod
    def from_single_dict(cls, data: dict[str, Any], meta_info: dict[str, Any] | None = None) -> "DataProto":
        """Split one dict by value type: tensors go to `batch`, arrays and lists to `non_tensor_batch`."""
        tensors, non_tensors = {}, {}
        for key, value in data.items():
            if isinstance(value, torch.Tensor):
                tensors[key] = value
            elif isinstance(value, (np.ndarray, list, tuple)):
                non_tensors[key] = value
            else:
                raise TypeError(f"data[{key!r}] is a {type(value).__name__}; expected a torch.Tensor, "
                                "a numpy array or a list with one entry per row")
        return cls.from_dict(tensors, non_tensors, meta_info)

    def check_consistency(self) -> None:
        """Every non-tensor column is 1-D with one entry per row."""
        n = len(self)
        for key, value in self.non_tensor_batch.items():
            if not isinstance(value, np.ndarray):
                raise TypeError(f"non_tensor_batch[{key!r}] must be a numpy array, got {type(value).__name__}")
            if value.ndim == 0 or value.shape[0] != n:
                raise ValueError(f"non_tensor_batch[{key!r}] has {value.shape[0] if value.ndim else 0} entries "
                                 f"but the batch has {n} rows")

    # ---------------------------------------------------------------- size and indexing
    def __len__(self) -> int:
        if self.batch is not None:
            return int(self.batch.batch_size[0]) if len(self.batch.batch_size) else 0
        for value in self.non_tensor_batch.values():
            return int(value.shape[0])
        return 0

    def __getitem__(self, item):
        if isinstance(item, (int, np.integer)):
            item = int(item)
            if not -len(self) <= item < len(self):
                raise IndexError(f"row {item} out of range for a DataProto of {len(self)} rows")
            return DataProtoItem(
                batch=self.batch[item] if self.batch is not None else None,
                non_tensor_batch={k: v[item] for k, v in self.non_tensor_batch.items()},
                meta_info=self.meta_info,
            )
        if isinstance(item, slice):
            return DataProto(
                batch=self.batch[item] if self.batch is not None else None,
                non_tensor_batch={k: v[item] for k, v in self.non_tensor_batch.items()},
                meta_info=self.meta_info,
            )
        return self.index_select(item)

    def index_select(self, index) -> "DataProto":
        """Rows at `index` (a list, numpy array or tensor of integers or booleans), in that order."""
        idx = _index_to_tensor(index, len(self))
        if idx.numel() and (idx.max() >= len(self) or idx.min() < -len(self)):
            raise IndexError(f"index {int(idx.max())} out of range for a DataProto of {len(self)} rows")
        idx_np = idx.numpy()
        return DataProto(
            batch=self.batch[idx] if self.batch is not None else None,
            non_tensor_batch={k: v[idx_np] for k, v in self.non_tensor_batch.items()},
            meta_info=self.meta_info,
        )

    def __iter__(self) -> Iterator[DataProtoItem]:
        for i in range(len(self)):
            yield self[i]

    # ---------------------------------------------------------------- keys
    def _check_keys(self, batch_keys, non_tensor_batch_keys, meta_info_keys) -> None:
        have = {
            "batch": set(self.batch.keys()) if self.batch is not None else set(),
            "non_tensor_batch": set(self.non_tensor_batch),
            "meta_info": set(self.meta_info),
        }
        for where, keys in (("batch", batch_keys), ("non_tensor_batch", non_tensor_batch_keys),
                            ("meta_info", meta_info_keys)):
            missing = [k for k in keys or () if k not in have[where]]
            if missing:
                raise KeyError(f"{where} has no key(s) {missing}; it has {sorted(have[where])}")

    def select(self, batch_keys: Sequence[str] | None = None, non_tensor_batch_keys: Sequence[str] | None = None,
               meta_info_keys: Sequence[str] | None = None, deepcopy: bool = False) -> "DataProto":
        """A DataProto with only the named keys (None keeps all of that part)."""
        self._check_keys(batch_keys, non_tensor_batch_keys, meta_info_keys)
        batch = self.batch
        if batch is not None and batch_keys is not None:
            batch = batch.select(*batch_keys)
        non_tensor = self.non_tensor_batch if non_tensor_batch_keys is None else {
            k: self.non_tensor_batch[k] for k in non_tensor_batch_keys}
        meta = self.meta_info if meta_info_keys is None else {k: self.meta_info[k] for k in meta_info_keys}
        if deepcopy:
            return DataProto(batch=batch.clone() if batch is not None else None,
                             non_tensor_batch=copy.deepcopy(non_tensor), meta_info=copy.deepcopy(meta))
        return DataProto(batch=batch, non_tensor_batch=dict(non_tensor), meta_info=dict(meta))

    def pop(self, batch_keys: Sequence[str] | None = None, non_tensor_batch_keys: Sequence[str] | None = None,
            meta_info_keys: Sequence[str] | None = None) -> "DataProto":
        """Remove the named keys from this DataProto and return them as a new one."""
        batch_keys, non_tensor_batch_keys, meta_info_keys = (list(batch_keys or []), list(non_tensor_batch_keys or []),
                                                              list(meta_info_keys or []))
        self._check_keys(batch_keys, non_tensor_batch_keys, meta_info_keys)
        popped = {k: self.batch.pop(k) for k in batch_keys}
        batch = TensorDict(popped, batch_size=self.batch.batch_size) if popped else None
        non_tensor = {k: self.non_tensor_batch.pop(k) for k in non_tensor_batch_keys}
        meta = {k: self.meta_info.pop(k) for k in meta_info_keys}
        return DataProto(batch=batch, non_tensor_batch=non_tensor, meta_info=meta)

    def union(self, other: "DataProto") -> "DataProto":
        """Add `other`'s keys to this DataProto (in place, returned). A key present in both must hold
        equal values, otherwise ValueError names it."""
        if len(self) != len(other) and len(self) and len(other):
            raise ValueError(f"cannot union DataProtos of {len(self)} and {len(other)} rows")
        if other.batch is not None:
            if self.batch is None:
                self.batch = other.batch.clone(False)  # shallow: adding keys here leaves `other` as it was
            else:
                for key, value in other.batch.items():
                    if key in self.batch.keys() and not _values_equal(self.batch[key], value):
                        raise ValueError(f"union: batch[{key!r}] differs between the two DataProtos")
                    self.batch[key] = value
        for key, value in other.non_tensor_batch.items():
            if key in self.non_tensor_batch and not _values_equal(self.non_tensor_batch[key], value):
                raise ValueError(f"union: non_tensor_batch[{key!r}] differs between the two DataProtos")
            self.non_tensor_batch[key] = value
        for key, value in other.meta_info.items():
            if key in self.meta_info and not _values_equal(self.meta_info[key], value):
                raise ValueError(f"union: meta_info[{key!r}] differs ({self.meta_info[key]!r} vs {value!r})")
            self.meta_info[key] = value
        return self

    # ---------------------------------------------------------------- splitting and joining
    def chunk(self, chunks: int) -> list["DataProto"]:
        """`chunks` equal parts, in order. The length must divide; pad_dataproto_to_divisor makes it so."""
        if chunks <= 0:
            raise ValueError(f"chunks must be positive, got {chunks}")
        if len(self) % chunks:
            raise ValueError(f"cannot chunk {len(self)} rows into {chunks} equal parts; "
                             "pad first with pad_dataproto_to_divisor(data, chunks)")
        return self.split(len(self) // chunks) if len(self) else [self[0:0] for _ in range(chunks)]

    def split(self, split_size: int) -> list["DataProto"]:
        """Consecutive parts of `split_size` rows (the last may be shorter)."""
        if split_size <= 0:
            raise ValueError(f"split_size must be positive, got {split_size}")
        return [self[i:i + split_size] for i in range(0, len(self), split_size)]

    @staticmethod
    def concat(data: Sequence["DataProto"]) -> "DataProto":
        """Rows of all parts, in order. meta_info is merged; on a conflict the first part's value wins."""
        if not data:
            raise ValueError("concat needs at least one DataProto")
        batches = [d.batch for d in data]
        if any(b is None for b in batches) and not all(b is None for b in batches):
            raise ValueError("concat: some parts have tensors and some do not")
        batch = None if batches[0] is None else torch.cat(batches, dim=0)
        keys = set(data[0].non_tensor_batch)
        for i, d in enumerate(data):
            if set(d.non_tensor_batch) != keys:
                raise ValueError(f"concat: part {i} has non-tensor keys {sorted(d.non_tensor_batch)}, "
                                 f"part 0 has {sorted(keys)}")
        non_tensor = {k: np.concatenate([d.non_tensor_batch[k] for d in data]) for k in data[0].non_tensor_batch}
        meta: dict[str, Any] = {}
        for d in data:
            for k, v in d.meta_info.items():
                meta.setdefault(k, v)
        return DataProto(batch=batch, non_tensor_batch=non_tensor, meta_info=meta)

    def repeat(self, repeat_times: int = 2, interleave: bool = True) -> "DataProto":
        """Each row `repeat_times` times: a a b b (interleave) or a b a b."""
        n = len(self)
        idx = (torch.arange(n).repeat_interleave(repeat_times) if interleave else torch.arange(n).repeat(repeat_times))
        out = self.index_select(idx)
        out.meta_info = dict(self.meta_info)
        return out

    def reorder(self, indices: torch.Tensor) -> None:
        """Permute rows in place (veRL semantics)."""
        out = self.index_select(indices)
        self.batch, self.non_tensor_batch = out.batch, out.non_tensor_batch

    def make_iterator(self, mini_batch_size: int, epochs: int, seed: int | None = None,
                      dataloader_kwargs: dict | None = None) -> Iterator["DataProto"]:
        """Mini-batches of `mini_batch_size` rows, `epochs` times over; shuffled per epoch when
        dataloader_kwargs={'shuffle': True} (reproducibly with `seed`)."""
        if len(self) % mini_batch_size:
            raise ValueError(f"{len(self)} rows do not divide into mini-batches of {mini_batch_size}")
        shuffle = bool((dataloader_kwargs or {}).get("shuffle", False))
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        for _ in range(epochs):
            order = torch.randperm(len(self), generator=generator) if shuffle else torch.arange(len(self))
            for start in range(0, len(self), mini_batch_size):
                part = self.index_select(order[start:start + mini_batch_size])
                part.meta_info = dict(self.meta_info)
                yield part

    def to(self, device, non_blocking: bool = False) -> "DataProto":
        """Moves the tensors (in place, like veRL's); non-tensor entries stay where they are."""
        if self.batch is not None:
            moved = {k: v.to(device, non_blocking=non_blocking) for k, v in self.batch.items()}
            self.batch = TensorDict(moved, batch_size=self.batch.batch_size, device=None)
        return self

    # ---------------------------------------------------------------- pickling
    def __getstate__(self):
        # Tensors travel as numpy arrays so that Ray (pickle protocol 5) ships them out of band,
        # without copying them into the pickle stream. Dtypes numpy lacks (bf16) travel as raw bits.
        tensors = None
        if self.batch is not None:
            tensors = {}
            for key, t in self.batch.items():
                t = t.detach().cpu().contiguous()
                raw = t.view(_RAW_VIEW[t.dtype]) if t.dtype in _RAW_VIEW else t
                tensors[key] = (raw.numpy(), str(t.dtype).removeprefix("torch."))
            tensors = (tensors, tuple(self.batch.batch_size))
        return {"tensors": tensors, "non_tensor_batch": self.non_tensor_batch, "meta_info": self.meta_info}

    def __setstate__(self, state):
        self.batch = None
        if state["tensors"] is not None:
            tensors, batch_size = state["tensors"]
            restored = {}
            for key, (array, dtype_name) in tensors.items():
                if not array.flags.writeable:  # zero-copy buffer from Ray's object store: take our own copy
                    array = array.copy()
                t = torch.from_numpy(array)
                dtype = getattr(torch, dtype_name)
                restored[key] = t.view(dtype) if dtype in _RAW_VIEW else t
            self.batch = TensorDict(restored, batch_size=batch_size)
        self.non_tensor_batch = state["non_tensor_batch"]
        self.meta_info = state["meta_info"]

    def __repr__(self) -> str:
        tensors = {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in self.batch.items()} \
            if self.batch is not None else {}
        return (f"DataProto(rows={len(self)}, tensors={tensors}, non_tensors={sorted(self.non_tensor_batch)}, "
                f"meta_info={sorted(self.meta_info)})")


_RAW_VIEW = {torch.bfloat16: torch.int16, torch.float8_e4m3fn: torch.uint8, torch.float8_e5m2: torch.uint8}


def pad_dataproto_to_divisor(data: DataProto, size_divisor: int) -> tuple[DataProto, int]:
    """Append copies of the first rows until len(data) divides by size_divisor; returns (data, pad_size)."""
    if size_divisor <= 0:
        raise ValueError(f"size_divisor must be positive, got {size_divisor}")
    if len(data) == 0:
        raise ValueError("cannot pad an empty DataProto: there is no row to repeat")
    pad_size = -len(data) % size_divisor
    if pad_size == 0:
        return data, 0
    parts, remaining = [data], pad_size
    while remaining > 0:
        take = min(remaining, len(data))
        parts.append(data[:take])
        remaining -= take
    return DataProto.concat(parts), pad_size


def unpad_dataproto(data: DataProto, pad_size: int) -> DataProto:
    """Undo pad_dataproto_to_divisor."""
    return data[:len(data) - pad_size] if pad_size else data
