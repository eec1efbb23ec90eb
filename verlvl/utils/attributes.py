"""An attribute set for the duration of a block, and put back after it (also when the block raises)."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def attribute_set(obj, name: str, value, default=None):
    previous = getattr(obj, name, default)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, previous)
