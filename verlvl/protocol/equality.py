"""What DataProto compares and merges with: deep equality (NaN-safe), veRL's union helpers, the error type."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from tensordict import TensorDict


class DataProtoError(ValueError, AssertionError):
    """A DataProto operation refused its input. Also an AssertionError, so code written against veRL's
    asserts (`except AssertionError`, `pytest.raises(AssertionError)`) still catches it."""


def as_object_array(values: Sequence[Any]) -> np.ndarray:
    """A 1-D object array holding `values` as they are (np.array would turn nested lists into 2-D)."""
    if isinstance(values, np.ndarray) and values.ndim == 1:
        return values
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


def deep_equal(a: Any, b: Any, _path: set[int] | None = None) -> bool:
    """Equality for anything a DataProto holds: tensors (same shape and values), numpy arrays (same dtype
    and shape; NaN equals NaN; object arrays element by element), NaN floats, self-referencing
    containers (a cycle met again on the same path counts as equal), else `==`."""
    if a is b:
        return True
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and bool(torch.equal(a, b)))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.dtype != object:
            try:
                return bool(np.array_equal(a, b, equal_nan=True))
            except TypeError:  # strings and other types without NaN
                return bool(np.array_equal(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    path = set() if _path is None else _path
    if id(a) in path:
        return True
    path.add(id(a))
    try:
        if isinstance(a, np.ndarray):
            return all(deep_equal(x, y, path) for x, y in zip(a.flat, b.flat))
        if type(a) is not type(b) and isinstance(a, (list, tuple, dict)):
            return False
        if isinstance(a, (list, tuple)):
            return len(a) == len(b) and all(deep_equal(x, y, path) for x, y in zip(a, b))
        if isinstance(a, dict):
            return a.keys() == b.keys() and all(deep_equal(a[k], b[k], path) for k in a)
        try:
            return bool(a == b)
        except Exception:  # objects whose == is ambiguous or raises are treated as different
            return False
    finally:
        path.discard(id(a))


def union_tensor_dict(tensor_dict1: TensorDict, tensor_dict2: TensorDict) -> TensorDict:
    """Add tensor_dict2's keys to tensor_dict1 (in place, returned); a shared key must hold equal tensors."""
    if tensor_dict1.batch_size != tensor_dict2.batch_size:
        raise DataProtoError(f"cannot union tensor dicts of batch size {tuple(tensor_dict1.batch_size)} and "
                             f"{tuple(tensor_dict2.batch_size)}")
    for key, value in tensor_dict2.items():
        if key in tensor_dict1.keys() and not deep_equal(tensor_dict1[key], value):
            raise DataProtoError(f"union: batch[{key!r}] differs between the two DataProtos")
        tensor_dict1[key] = value
    return tensor_dict1


def union_numpy_dict(tensor_dict1: dict[str, np.ndarray], tensor_dict2: dict[str, np.ndarray]) -> dict:
    """Add tensor_dict2's arrays to tensor_dict1 (in place, returned); a shared key must hold equal arrays."""
    for key, value in tensor_dict2.items():
        if key in tensor_dict1 and not deep_equal(tensor_dict1[key], value):
            raise DataProtoError(f"union: non_tensor_batch[{key!r}] differs between the two DataProtos")
        tensor_dict1[key] = value
    return tensor_dict1


def union_two_dict(dict1: dict, dict2: dict) -> dict:
    """Add dict2's items to dict1 (in place, returned); a shared key must hold equal values."""
    for key, value in dict2.items():
        if key in dict1 and not deep_equal(dict1[key], value):
            raise DataProtoError(f"union: meta_info[{key!r}] differs ({dict1[key]!r} vs {value!r})")
        dict1[key] = value
    return dict1


def merge_meta_info(metas: Sequence[dict]) -> dict:
    """veRL's concat merge: every part's `metrics` (a dict, or a list of dicts) become one dict of lists,
    in part order; any other key is kept once and must be equal wherever it appears."""
    merged: dict[str, Any] = {}
    collected: list[dict] = []
    for meta in metas:
        for key, value in meta.items():
            if key == "metrics":
                if value is not None:
                    collected.extend(value if isinstance(value, list) else [value])
            elif key in merged and not deep_equal(merged[key], value):
                raise DataProtoError(f"Conflicting values for meta_info key {key!r}: {merged[key]!r} vs {value!r}")
            else:
                merged.setdefault(key, value)
    if collected:
        metrics: dict[str, list] = {}
        for one in collected:
            if not isinstance(one, dict):
                raise DataProtoError(f"meta_info['metrics'] entries must be dicts of metric values, got "
                                     f"{type(one).__name__}")
            for name, value in one.items():
                metrics.setdefault(name, []).append(value)
        merged["metrics"] = metrics
    return merged
