"""Reshaping the rows of a DataProto: fold into groups and back (veRL's fold/unfold_batch_dim), column chunks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from tensordict import TensorDict

from verlvl.protocol.equality import DataProtoError

if TYPE_CHECKING:
    from verlvl.protocol.core import DataProto


def fold_batch_dim(data: "DataProto", new_batch_size: int) -> "DataProto":
    """Rows (B, ...) become groups (new_batch_size, B // new_batch_size, ...): consecutive rows share a
    group. The result has new_batch_size rows; unfold_batch_dim undoes it."""
    n = len(data)
    if new_batch_size <= 0 or n % new_batch_size:
        raise DataProtoError(f"fold_batch_dim: {n} rows do not fold into {new_batch_size} equal groups")
    batch = None
    if data.batch is not None:
        batch = TensorDict({k: v.reshape(new_batch_size, n // new_batch_size, *v.shape[1:])
                            for k, v in data.batch.items()}, batch_size=[new_batch_size], device=data.batch.device)
    non_tensor = {k: v.reshape(new_batch_size, n // new_batch_size, *v.shape[1:])
                  for k, v in data.non_tensor_batch.items()}
    return type(data)(batch=batch, non_tensor_batch=non_tensor, meta_info=data.meta_info)


def unfold_batch_dim(data: "DataProto", batch_dims: int = 2) -> "DataProto":
    """The first `batch_dims` dimensions of every tensor and array become one row dimension."""
    if batch_dims < 1:
        raise DataProtoError(f"unfold_batch_dim: batch_dims must be at least 1, got {batch_dims}")

    def rows(shape) -> int:
        if len(shape) < batch_dims:
            raise DataProtoError(f"unfold_batch_dim: an entry of shape {tuple(shape)} has fewer than "
                                 f"{batch_dims} dimensions")
        return int(np.prod(shape[:batch_dims]))

    batch = None
    if data.batch is not None:
        tensors = {k: v.reshape(rows(v.shape), *v.shape[batch_dims:]) for k, v in data.batch.items()}
        size = next(iter(tensors.values())).shape[0] if tensors else len(data)
        batch = TensorDict(tensors, batch_size=[size], device=data.batch.device)
    non_tensor = {k: v.reshape(rows(v.shape), *v.shape[batch_dims:]) for k, v in data.non_tensor_batch.items()}
    return type(data)(batch=batch, non_tensor_batch=non_tensor, meta_info=data.meta_info)


def unfold_column_chunks(data: "DataProto", n_split: int, split_keys: Sequence[str] | None = None) -> "DataProto":
    """Each row becomes n_split rows: keys in split_keys are cut along their second dimension into n_split
    pieces (one per new row); every other key is repeated n_split times (interleaved)."""
    split = set(split_keys or ())

    def cut(value, name):
        if value.ndim == 1 and value.dtype == object:  # one list per row (from_dict's form): cut each list
            return _cut_entries(value, n_split, name)
        if value.ndim < 2 or value.shape[1] % n_split:
            raise DataProtoError(f"unfold_column_chunks: {name} has shape {tuple(value.shape)}; its second "
                                 f"dimension must divide by n_split={n_split}")
        return value.reshape(value.shape[0] * n_split, value.shape[1] // n_split, *value.shape[2:])

    batch = None
    if data.batch is not None:
        batch = TensorDict({k: cut(v, f"batch[{k!r}]") if k in split else torch.repeat_interleave(v, n_split, dim=0)
                            for k, v in data.batch.items()}, batch_size=[len(data) * n_split],
                           device=data.batch.device)
    non_tensor = {k: cut(v, f"non_tensor_batch[{k!r}]") if k in split else np.repeat(v, n_split, axis=0)
                  for k, v in data.non_tensor_batch.items()}
    return type(data)(batch=batch, non_tensor_batch=non_tensor, meta_info=data.meta_info)


def _cut_entries(column: np.ndarray, n_split: int, name: str) -> np.ndarray:
    out = np.empty(len(column) * n_split, dtype=object)
    for i, entry in enumerate(column):
        if not hasattr(entry, "__len__") or len(entry) % n_split:
            raise DataProtoError(f"unfold_column_chunks: {name} row {i} has no length that divides by "
                                 f"n_split={n_split}")
        size = len(entry) // n_split
        for j in range(n_split):
            out[i * n_split + j] = entry[j * size:(j + 1) * size]
    return out
