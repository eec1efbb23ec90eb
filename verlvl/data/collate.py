"""Collate dataset rows into veRL's batch dict (tensors stacked, everything else as object arrays)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from verlvl.protocol import DataProto, as_object_array


def collate_fn(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Tensors of equal shape are stacked; other values (raw ids, images, ground truth, per-row grids)
    become 1-D object arrays, one entry per row."""
    out: dict[str, Any] = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        if all(isinstance(v, torch.Tensor) for v in values) and len({tuple(v.shape) for v in values}) == 1:
            out[key] = torch.stack(values)
        else:
            out[key] = as_object_array(values)
    return out


def collate_to_dataproto(rows: list[dict[str, Any]]) -> DataProto:
    batch = collate_fn(rows)
    return DataProto.from_single_dict({k: v for k, v in batch.items() if isinstance(v, (torch.Tensor, np.ndarray))})
