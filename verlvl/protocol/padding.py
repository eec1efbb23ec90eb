"""Padding a DataProto to a divisor and back, and veRL's auto-padding switch (DataProtoConfig)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from verlvl.protocol.equality import DataProtoError

if TYPE_CHECKING:
    from verlvl.protocol.core import DataProto

AUTO_PADDING_KEY = "_verl_auto_padding"  # veRL's meta_info key: this DataProto may be chunked unevenly
AUTO_PADDING_ENV = "VERL_AUTO_PADDING"  # veRL's environment switch ("1" / "true"): every DataProto may


class _DataProtoConfigMeta(type):
    _auto_padding = False

    @property
    def auto_padding(cls) -> bool:
        return os.getenv(AUTO_PADDING_ENV, "false").strip().lower() in ("1", "true") or cls._auto_padding

    @auto_padding.setter
    def auto_padding(cls, enabled: bool) -> None:
        if not isinstance(enabled, bool):
            raise DataProtoError(f"DataProtoConfig.auto_padding must be True or False, got {enabled!r}")
        cls._auto_padding = enabled


class DataProtoConfig(metaclass=_DataProtoConfigMeta):
    """Process-wide switch, as in veRL: `DataProtoConfig.auto_padding = True` (or VERL_AUTO_PADDING=1) lets
    every DataProto chunk into parts that do not divide its rows (torch.chunk's sizes)."""


def pad_dataproto_to_divisor(data: "DataProto", size_divisor: int) -> tuple["DataProto", int]:
    """Append copies of the first rows (cycling) until len(data) divides by size_divisor; returns
    (data, pad_size). An empty DataProto is returned as it is (0 divides by anything)."""
    from verlvl.protocol.core import DataProto

    if not isinstance(data, DataProto):
        raise DataProtoError(f"pad_dataproto_to_divisor needs a DataProto, got {type(data).__name__}")
    if size_divisor <= 0:
        raise DataProtoError(f"size_divisor must be positive, got {size_divisor}")
    pad_size = -len(data) % size_divisor
    if pad_size == 0:
        return data, 0
    parts, remaining = [data], pad_size
    while remaining > 0:
        take = min(remaining, len(data))
        parts.append(data[:take])
        remaining -= take
    padded = DataProto.concat([part.select(meta_info_keys=[]) for part in parts])
    padded.meta_info = data.meta_info  # as a slice keeps it: the rows changed, the meta info did not
    return padded, pad_size


def unpad_dataproto(data: "DataProto", pad_size: int) -> "DataProto":
    """Undo pad_dataproto_to_divisor: drop the last pad_size rows."""
    return data[:len(data) - pad_size] if pad_size else data
