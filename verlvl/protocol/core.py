"""DataProto: the one batch type that crosses process boundaries (tensors, per-row Python objects, meta info)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from tensordict import TensorDict

from verlvl.protocol import reshape, storage
from verlvl.protocol.equality import (DataProtoError, as_object_array, merge_meta_info, union_numpy_dict,
                                      union_tensor_dict, union_two_dict)
from verlvl.protocol.padding import AUTO_PADDING_KEY, DataProtoConfig


def _index_to_tensor(index: Any, length: int) -> torch.Tensor:
    """Normalise a list / numpy / torch index (integer or boolean) to a 1-D LongTensor."""
    idx = torch.as_tensor(np.asarray(index) if not isinstance(index, torch.Tensor) else index)
    if idx.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
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
    arrays of the same length, usually dtype object), `meta_info` (small dict shared by all rows).

    Method names, arguments and semantics follow veRL's DataProto so code written for veRL ports unchanged.
    """

    batch: TensorDict | None = None
    non_tensor_batch: dict[str, np.ndarray] = field(default_factory=dict)
    meta_info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.non_tensor_batch = {k: v if isinstance(v, np.ndarray) else as_object_array(v)
                                 for k, v in (self.non_tensor_batch or {}).items()}
        self.meta_info = {} if self.meta_info is None else self.meta_info
        self.check_consistency()

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_dict(cls, tensors: dict[str, torch.Tensor] | None = None, non_tensors: dict[str, Any] | None = None,
                  meta_info: dict[str, Any] | None = None, num_batch_dims: int = 1,
                  auto_padding: bool = False) -> "DataProto":
        """Tensors with the same number of rows, per-row values (lists become 1-D object arrays, one entry
        per row, even when the entries are lists), meta info. auto_padding=True lets this DataProto chunk
        unevenly (veRL's flag, kept in meta_info)."""
        if num_batch_dims != 1:
            raise DataProtoError(f"a DataProto has one batch dimension (rows), got num_batch_dims={num_batch_dims}")
        tensors, non_tensors = tensors or {}, non_tensors or {}
        batch = None
        if tensors:
            rows, first_key = None, None
            for key, value in tensors.items():
                if not isinstance(value, torch.Tensor):
                    raise TypeError(f"tensors[{key!r}] is a {type(value).__name__}, not a torch.Tensor; "
                                    "put Python objects in non_tensors")
                if value.ndim == 0:
                    raise DataProtoError(f"tensors[{key!r}] is a scalar; every tensor needs a row dimension")
                if rows is None:
                    rows, first_key = value.shape[0], key
                elif value.shape[0] != rows:
                    raise DataProtoError(f"tensors[{key!r}] has {value.shape[0]} rows but tensors[{first_key!r}] "
                                         f"has {rows}: every tensor needs the same number of rows")
            batch = TensorDict(dict(tensors), batch_size=[rows])
        meta = dict(meta_info or {})
        if auto_padding:
            meta[AUTO_PADDING_KEY] = True
        return cls(batch=batch, non_tensor_batch=dict(non_tensors), meta_info=meta)

    @classmethod
    def from_single_dict(cls, data: dict[str, Any], meta_info: dict[str, Any] | None = None,
                         auto_padding: bool = False) -> "DataProto":
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
        return cls.from_dict(tensors, non_tensors, meta_info, auto_padding=auto_padding)

    @classmethod
    def from_tensordict(cls, tensor_dict: TensorDict, meta_info: dict | None = None,
                        num_batch_dims: int = 1) -> "DataProto":
        """From a TensorDict as to_tensordict makes it (NonTensorStack columns, NonTensorData meta info)."""
        return storage.from_tensordict(cls, tensor_dict, meta_info, num_batch_dims)

    def to_tensordict(self) -> TensorDict:
        """One TensorDict holding tensors, per-row columns (NonTensorStack) and meta info (NonTensorData)."""
        return storage.to_tensordict(self)

    def save_to_disk(self, filepath) -> None:
        """Write this DataProto to one file (load it with DataProto.load_from_disk)."""
        storage.save_to_disk(self, filepath)

    @classmethod
    def load_from_disk(cls, filepath, allow_pickle: bool = False) -> "DataProto":
        """Read a save_to_disk file; allow_pickle=True only for your own files whose rows hold arbitrary
        Python objects (see storage.load_from_disk)."""
        return storage.load_from_disk(cls, filepath, allow_pickle)

    def check_consistency(self) -> None:
        """One batch dimension; every non-tensor column is a numpy array with one entry per row."""
        if self.batch is not None and len(self.batch.batch_size) != 1:
            raise DataProtoError(f"a DataProto's batch has one batch dimension (rows); got batch_size "
                                 f"{tuple(self.batch.batch_size)}")
        n, first = len(self), None
        for key, value in self.non_tensor_batch.items():
            if not isinstance(value, np.ndarray):
                raise TypeError(f"non_tensor_batch[{key!r}] must be a numpy array, got {type(value).__name__}")
            if value.ndim == 0 or value.shape[0] != n:
                where = "the batch has" if self.batch is not None else f"non_tensor_batch[{first!r}] has"
                raise DataProtoError(f"non_tensor_batch[{key!r}] has {value.shape[0] if value.ndim else 0} "
                                     f"entries but {where} {n} rows")
            first = first or key

    # ---------------------------------------------------------------- size and indexing
    def __len__(self) -> int:
        if self.batch is not None:
            return int(self.batch.batch_size[0]) if len(self.batch.batch_size) else 0
        for value in self.non_tensor_batch.values():
            return int(value.shape[0])
        return 0

    def __getitem__(self, item):
        """int -> DataProtoItem; slice, list, numpy array or tensor (integers or booleans) -> DataProto."""
        if isinstance(item, slice):
            return self.slice(item.start, item.stop, item.step)
        if isinstance(item, (list, np.ndarray, torch.Tensor)):
            return self.select_idxs(item)
        if isinstance(item, (int, np.integer)):
            item = int(item)
            if not -len(self) <= item < len(self):
                raise IndexError(f"row {item} out of range for a DataProto of {len(self)} rows")
            return DataProtoItem(
                batch=self.batch[item] if self.batch is not None else None,
                non_tensor_batch={k: v[item] for k, v in self.non_tensor_batch.items()},
                meta_info=self.meta_info,
            )
        raise TypeError(f"a DataProto is indexed by an int, a slice, a list, a numpy array or a tensor, "
                        f"not a {type(item).__name__}")

    def slice(self, start: int | None = None, end: int | None = None, step: int | None = None) -> "DataProto":
        """Rows start:end:step as a DataProto (meta_info shared, as veRL does)."""
        item = slice(start, end, step)
        return type(self)(batch=self.batch[item] if self.batch is not None else None,
                          non_tensor_batch={k: v[item] for k, v in self.non_tensor_batch.items()},
                          meta_info=self.meta_info)

    def select_idxs(self, idxs) -> "DataProto":
        """Rows at `idxs` (a list, numpy array or tensor of integers or booleans), in that order."""
        idx = _index_to_tensor(idxs, len(self))
        if idx.numel() and (idx.max() >= len(self) or idx.min() < -len(self)):
            raise IndexError(f"index {int(idx.max())} out of range for a DataProto of {len(self)} rows")
        idx_np = idx.numpy()
        batch = None
        if self.batch is not None:
            batch = TensorDict({k: v[idx.to(v.device)] for k, v in self.batch.items()}, batch_size=[idx.numel()],
                               device=self.batch.device)
        return type(self)(batch=batch, non_tensor_batch={k: v[idx_np] for k, v in self.non_tensor_batch.items()},
                          meta_info=self.meta_info)

    index_select = select_idxs

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
            return type(self)(batch=batch.clone() if batch is not None else None,
                              non_tensor_batch=copy.deepcopy(non_tensor), meta_info=copy.deepcopy(meta))
        return type(self)(batch=batch, non_tensor_batch=dict(non_tensor), meta_info=dict(meta))

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
        return type(self)(batch=batch, non_tensor_batch=non_tensor, meta_info=meta)

    def rename(self, old_keys: str | Sequence[str] | None = None,
               new_keys: str | Sequence[str] | None = None) -> "DataProto":
        """Rename batch keys in place (returned)."""
        old = [old_keys] if isinstance(old_keys, str) else list(old_keys or [])
        new = [new_keys] if isinstance(new_keys, str) else list(new_keys or [])
        if len(old) != len(new):
            raise DataProtoError(f"rename: {len(old)} old keys but {len(new)} new keys")
        self._check_keys(old, None, None)
        if old:
            self.batch.rename_key_(tuple(old), tuple(new))
        return self

    def union(self, other: "DataProto") -> "DataProto":
        """Add `other`'s keys to this DataProto (in place, returned). A key present in both must hold
        equal values (NaN equals NaN), otherwise the error names it."""
        if len(self) != len(other) and len(self) and len(other):
            raise DataProtoError(f"cannot union DataProtos of {len(self)} and {len(other)} rows")
        if other.batch is not None:
            if self.batch is None:
                self.batch = other.batch.clone(False)  # shallow: adding keys here leaves `other` as it was
            else:
                union_tensor_dict(self.batch, other.batch)
        union_numpy_dict(self.non_tensor_batch, other.non_tensor_batch)
        union_two_dict(self.meta_info, other.meta_info)
        return self

    # ---------------------------------------------------------------- splitting and joining
    def is_padding_enabled(self) -> bool:
        """Whether this DataProto may chunk unevenly: from_dict(auto_padding=True) or DataProtoConfig."""
        return bool(self.meta_info.get(AUTO_PADDING_KEY, False)) or DataProtoConfig.auto_padding

    def padding(self, padding_size: int, padding_candidate: str = "") -> None:
        """Append `padding_size` copies of the first row ("first") or the last row (anything else), in place."""
        if padding_size <= 0:
            return
        if len(self) == 0:
            raise DataProtoError("cannot pad an empty DataProto: there is no row to repeat")
        row = self.select_idxs([0 if padding_candidate == "first" else len(self) - 1])
        padded = type(self).concat([self.select(meta_info_keys=[]), row.select(meta_info_keys=[]).repeat(padding_size)])
        self.batch, self.non_tensor_batch = padded.batch, padded.non_tensor_batch

    def chunk(self, chunks: int) -> list["DataProto"]:
        """`chunks` consecutive parts, meta_info shared. As in veRL, the rows must divide by `chunks` unless
        padding is enabled (is_padding_enabled); then parts are sized like torch.chunk (ceil(rows / chunks),
        the last shorter) when there are tensors, like np.array_split when there are only non-tensors."""
        if chunks <= 0:
            raise DataProtoError(f"chunks must be positive, got {chunks}")
        n = len(self)
        if n % chunks == 0:
            sizes = [n // chunks] * chunks
        elif not self.is_padding_enabled():
            raise DataProtoError(f"cannot chunk {n} rows into {chunks} equal parts; pad first with "
                                 f"pad_dataproto_to_divisor(data, {chunks}), or allow uneven parts as veRL does "
                                 "(from_dict(..., auto_padding=True) or DataProtoConfig.auto_padding = True)")
        elif self.batch is not None:
            size = -(-n // chunks)
            sizes = [min(size, n - start) for start in range(0, n, size)]
            if len(sizes) != chunks:
                raise DataProtoError(f"torch.chunk splits {n} rows into {len(sizes)} parts, not {chunks}; pad to "
                                     f"a multiple of {chunks} first (pad_dataproto_to_divisor or .padding)")
        else:
            sizes = [n // chunks + (i < n % chunks) for i in range(chunks)]
        bounds = np.cumsum([0] + sizes).tolist()
        return [self[bounds[i]:bounds[i + 1]] for i in range(chunks)]

    def split(self, split_size: int) -> list["DataProto"]:
        """Consecutive parts of `split_size` rows (the last may be shorter)."""
        if split_size <= 0:
            raise DataProtoError(f"split_size must be positive, got {split_size}")
        return [self[i:i + split_size] for i in range(0, len(self), split_size)]

    @staticmethod
    def concat(data: Sequence["DataProto"]) -> "DataProto":
        """Rows of all parts, in order. meta_info is merged as veRL does: `metrics` of every part become
        one dict of lists (worker outputs: {name: [rank 0's value, rank 1's, ...]}); any other key must
        be equal wherever it appears."""
        if not data:
            raise DataProtoError("concat needs at least one DataProto")
        batches = [d.batch for d in data]
        if any(b is None for b in batches) and not all(b is None for b in batches):
            raise DataProtoError("concat: some parts have tensors and some do not")
        batch = None if batches[0] is None else torch.cat(batches, dim=0)
        keys = set(data[0].non_tensor_batch)
        for i, d in enumerate(data):
            if set(d.non_tensor_batch) != keys:
                raise DataProtoError(f"concat: part {i} has non-tensor keys {sorted(d.non_tensor_batch)}, "
                                     f"part 0 has {sorted(keys)}")
        non_tensor = {k: np.concatenate([d.non_tensor_batch[k] for d in data]) for k in data[0].non_tensor_batch}
        return type(data[0])(batch=batch, non_tensor_batch=non_tensor,
                             meta_info=merge_meta_info([d.meta_info for d in data]))

    def repeat(self, repeat_times: int = 2, interleave: bool = True) -> "DataProto":
        """Each row `repeat_times` times: a a b b (interleave) or a b a b."""
        n = len(self)
        idx = (torch.arange(n).repeat_interleave(repeat_times) if interleave else torch.arange(n).repeat(repeat_times))
        out = self.select_idxs(idx)
        out.meta_info = dict(self.meta_info)
        return out

    def sample_level_repeat(self, repeat_times) -> "DataProto":
        """Row i `repeat_times[i]` times, in order (a list, tuple, numpy array or 1-D tensor of counts)."""
        counts = torch.as_tensor(np.asarray(repeat_times) if not isinstance(repeat_times, torch.Tensor)
                                 else repeat_times)
        if counts.ndim != 1 or counts.numel() != len(self):
            raise DataProtoError(f"sample_level_repeat needs one count per row ({len(self)}), got shape "
                                 f"{tuple(counts.shape)}")
        if counts.numel() and (counts.is_floating_point() or int(counts.min()) < 0):
            raise DataProtoError("sample_level_repeat: counts must be non-negative integers")
        out = self.select_idxs(torch.arange(len(self)).repeat_interleave(counts.long()))
        out.meta_info = self.meta_info
        return out

    def unfold_column_chunks(self, n_split: int, split_keys: Sequence[str] | None = None) -> "DataProto":
        """Each row becomes n_split rows: split_keys are cut along dim 1, the other keys repeated."""
        return reshape.unfold_column_chunks(self, n_split, split_keys)

    def reorder(self, indices: torch.Tensor) -> None:
        """Permute rows in place (veRL semantics)."""
        out = self.select_idxs(indices)
        self.batch, self.non_tensor_batch = out.batch, out.non_tensor_batch

    def make_iterator(self, mini_batch_size: int, epochs: int, seed: int | None = None,
                      dataloader_kwargs: dict | None = None) -> Iterator["DataProto"]:
        """Mini-batches of `mini_batch_size` rows, `epochs` times over; shuffled per epoch when
        dataloader_kwargs={'shuffle': True} (reproducibly with `seed`)."""
        if len(self) % mini_batch_size:
            raise DataProtoError(f"{len(self)} rows do not divide into mini-batches of {mini_batch_size}")
        shuffle = bool((dataloader_kwargs or {}).get("shuffle", False))
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        for _ in range(epochs):
            order = torch.randperm(len(self), generator=generator) if shuffle else torch.arange(len(self))
            for start in range(0, len(self), mini_batch_size):
                part = self.select_idxs(order[start:start + mini_batch_size])
                part.meta_info = dict(self.meta_info)
                yield part

    def to(self, device, non_blocking: bool = False) -> "DataProto":
        """Moves the tensors (in place, like veRL's); non-tensor entries stay where they are."""
        if self.batch is not None:
            moved = {k: v.to(device, non_blocking=non_blocking) for k, v in self.batch.items()}
            self.batch = TensorDict(moved, batch_size=self.batch.batch_size, device=None)
        return self

    def print_size(self, prefix: str = "") -> None:
        """Print the GB held by the tensors and by the non-tensor arrays (veRL's debugging aid)."""
        tensors = sum(v.element_size() * v.numel() for v in self.batch.values()) if self.batch is not None else 0
        arrays = sum(v.nbytes for v in self.non_tensor_batch.values())
        message = f"Size of tensordict: {tensors / 1024 ** 3} GB, size of non_tensor_batch: {arrays / 1024 ** 3} GB"
        print(f"{prefix}, {message}" if prefix else message)

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
