"""DataProto to and from a file (save_to_disk / load_from_disk) and a TensorDict (to/from_tensordict)."""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tensordict import NonTensorData, NonTensorStack, TensorDict

from verlvl.protocol.equality import DataProtoError

if TYPE_CHECKING:
    from verlvl.protocol.core import DataProto

FORMAT = "verlvl.DataProto/1"


def _encode_array(array: np.ndarray) -> dict:
    if array.dtype.kind in "biufc":  # numbers and booleans travel as a tensor
        return {"kind": "numeric", "data": torch.from_numpy(np.ascontiguousarray(array))}
    if array.dtype.kind in "US":  # fixed-width strings or bytes
        return {"kind": "text", "dtype": array.dtype.str, "shape": list(array.shape), "values": array.ravel().tolist()}
    return {"kind": "object", "dtype": array.dtype.str, "shape": list(array.shape), "values": list(array.ravel())}


def _decode_array(entry: dict) -> np.ndarray:
    if entry["kind"] == "numeric":
        return entry["data"].numpy()
    if entry["kind"] == "text":
        return np.array(entry["values"], dtype=entry["dtype"]).reshape(entry["shape"])
    out = np.empty(len(entry["values"]), dtype=object)
    for i, value in enumerate(entry["values"]):  # element by element: lists stay entries, not dimensions
        out[i] = value
    return out.reshape(entry["shape"])


def _what_needs_pickle(error: Exception) -> str:
    found = [line.strip() for line in str(error).splitlines() if "Unsupported global" in line]
    return f" ({found[0]})" if found else ""


def save_to_disk(data: "DataProto", filepath) -> None:
    """One torch.save file: tensors as tensors, numeric arrays as tensors, per-row objects as Python values."""
    torch.save({"format": FORMAT,
                "batch": None if data.batch is None else {k: v for k, v in data.batch.items()},
                "batch_size": None if data.batch is None else list(data.batch.batch_size),
                "non_tensor_batch": {k: _encode_array(v) for k, v in data.non_tensor_batch.items()},
                "meta_info": data.meta_info}, filepath)


def load_from_disk(cls, filepath, allow_pickle: bool = False) -> "DataProto":
    """Read a save_to_disk file. Loaded with torch's weights_only unpickler (tensors, numbers, strings,
    lists, dicts; nothing runs), because a file may come from anywhere; rows holding other Python objects
    (PIL images, numpy scalars, your classes) need allow_pickle=True, which runs the file's pickle: only
    for files you wrote yourself."""
    try:
        state = torch.load(filepath, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as e:
        raise DataProtoError(f"load_from_disk({str(filepath)!r}): the file holds Python objects beyond tensors, "
                             "numbers, strings, lists and dicts, which only a full unpickle restores (it can run code "
                             "from the file). If you wrote this file yourself: load_from_disk(path, allow_pickle=True)."
                             f"{_what_needs_pickle(e)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise DataProtoError(f"load_from_disk({str(filepath)!r}): not a file written by DataProto.save_to_disk "
                             f"(expected format {FORMAT!r})")
    batch = None
    if state["batch"] is not None:
        batch = TensorDict(state["batch"], batch_size=state["batch_size"])
    non_tensor = {k: _decode_array(v) for k, v in state["non_tensor_batch"].items()}
    return cls(batch=batch, non_tensor_batch=non_tensor, meta_info=state["meta_info"])


def to_tensordict(data: "DataProto") -> TensorDict:
    """One TensorDict: tensors as they are, each per-row column as a NonTensorStack (its entries unchanged,
    nested lists and dicts included), each meta_info entry as NonTensorData."""
    tensors = {} if data.batch is None else dict(data.batch.items())
    clash = sorted((set(tensors) & set(data.non_tensor_batch)) | ((set(tensors) | set(data.non_tensor_batch))
                                                                 & set(data.meta_info)))
    if clash:
        raise DataProtoError(f"to_tensordict: key(s) {clash} appear in more than one of batch, non_tensor_batch "
                             "and meta_info; a TensorDict has one namespace")
    out = TensorDict(tensors, batch_size=[len(data)])
    for key, column in data.non_tensor_batch.items():
        out[key] = NonTensorStack.from_list([NonTensorData(value) for value in column])
    for key, value in data.meta_info.items():
        out[key] = NonTensorData(value)
    return out


def _column(value: NonTensorStack) -> np.ndarray:
    out = np.empty(len(value), dtype=object)
    for i, item in enumerate(value):
        out[i] = item.data if isinstance(item, NonTensorData) else item.tolist()
    return out


def from_tensordict(cls, tensor_dict: TensorDict, meta_info: dict | None = None,
                    num_batch_dims: int = 1) -> "DataProto":
    """Inverse of to_tensordict: tensors -> batch, NonTensorStack -> a per-row column, NonTensorData ->
    meta_info (on top of the `meta_info` given)."""
    if num_batch_dims != 1:
        raise DataProtoError(f"from_tensordict: a DataProto has one batch dimension, got num_batch_dims="
                             f"{num_batch_dims}")
    tensors: dict[str, torch.Tensor] = {}
    non_tensor: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = dict(meta_info or {})
    for key in tensor_dict.keys():
        value = tensor_dict.get(key)
        if isinstance(value, NonTensorStack):
            non_tensor[key] = _column(value)
        elif isinstance(value, NonTensorData):
            meta[key] = value.data
        elif isinstance(value, torch.Tensor):
            tensors[key] = value
        else:
            raise DataProtoError(f"from_tensordict: entry {key!r} is a {type(value).__name__}; expected tensors, "
                                 "NonTensorStack or NonTensorData (flatten nested TensorDicts first)")
    rows = tensor_dict.batch_size[:1] if len(tensor_dict.batch_size) else None
    batch = TensorDict(tensors, batch_size=rows) if tensors else None
    return cls(batch=batch, non_tensor_batch=non_tensor, meta_info=meta)
