"""Images from parquet cells (bytes, paths, PIL), resized to a pixel budget keeping the aspect ratio."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from PIL import Image


class DataError(ValueError):
    """Bad training data; the message names the file, the row and what to do."""


def open_image(value: Any, where: str) -> Image.Image:
    """Open (lazily: the header only) an image given as {'bytes': ...}, {'path': ...}, raw bytes, a path
    or a PIL image. Raises DataError naming `where` when it cannot."""
    try:
        if isinstance(value, Image.Image):
            return value
        if isinstance(value, dict):
            if value.get("bytes") is not None:
                return Image.open(io.BytesIO(value["bytes"]))
            if value.get("path"):
                return Image.open(_local_path(value["path"]))
            if value.get("image") is not None:
                return open_image(value["image"], where)
            raise DataError(f"{where}: image entry has neither 'bytes' nor 'path' (keys: {sorted(value)})")
        if isinstance(value, (bytes, bytearray)):
            return Image.open(io.BytesIO(value))
        if isinstance(value, str):
            return Image.open(_local_path(value))
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{where}: cannot read the image ({type(e).__name__}: {e}); re-export it as PNG/JPEG "
                        "bytes or fix its path") from e
    raise DataError(f"{where}: an image must be {{'bytes': ...}}, {{'path': ...}}, bytes, a path or a PIL "
                    f"image, not {type(value).__name__}")


def _local_path(path: str) -> str:
    path = path.removeprefix("file://")
    if not Path(path).is_file():
        raise FileNotFoundError(f"no image file at {path}")
    return path


def decode_image(image: Image.Image, where: str) -> Image.Image:
    """Decode fully and convert to RGB; corrupt data becomes a DataError naming `where`."""
    try:
        image.load()
        return image.convert("RGB") if image.mode != "RGB" else image
    except Exception as e:
        raise DataError(f"{where}: the image bytes are corrupt or truncated ({type(e).__name__}: {e})") from e


def fitted_size(width: int, height: int, min_pixels: int | None, max_pixels: int | None) -> tuple[int, int]:
    """(width, height) scaled, aspect ratio kept, so that the area lies within [min_pixels, max_pixels]."""
    area = width * height
    if max_pixels and area > max_pixels:
        factor = math.sqrt(max_pixels / area)
        width, height = max(1, int(width * factor)), max(1, int(height * factor))
    elif min_pixels and area < min_pixels:
        factor = math.sqrt(min_pixels / area)
        width, height = math.ceil(width * factor), math.ceil(height * factor)
    return width, height


def fit_image(image: Image.Image, min_pixels: int | None, max_pixels: int | None) -> Image.Image:
    size = fitted_size(*image.size, min_pixels, max_pixels)
    return image if size == image.size else image.resize(size, Image.Resampling.BICUBIC)
