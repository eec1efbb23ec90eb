"""The trainer view's pixel inputs, computed where the model runs (raw images travel, pixels do not)."""

from __future__ import annotations

import torch


def image_inputs(processor, images: list, expected_grid_thw: torch.Tensor | None = None) -> dict:
    """pixel_values and image_grid_thw of a row's (already resized) images, as the processor makes them.
    If the dataset's grid is given, a mismatch (a different image processor?) is an error, never a
    silent misalignment of image tokens."""
    if not images:
        return {}
    out = processor.image_processor(images=images, return_tensors="pt")
    grid = out["image_grid_thw"]
    if expected_grid_thw is not None and not torch.equal(grid, expected_grid_thw.to(grid.dtype)):
        raise ValueError(f"image grids {grid.tolist()} differ from the dataset's {expected_grid_thw.tolist()}: "
                         "the data was prepared with another image processor configuration")
    return {"pixel_values": out["pixel_values"], "image_grid_thw": grid}


def expand_image_placeholders(ids: list[int], image_token_id: int | None, counts: list[int]) -> list[int]:
    """One placeholder token per image -> each image's token count (`counts`, in order); every count is used.
    A mismatch is a ValueError saying which way it is off (the caller names the row)."""
    out, k = [], 0
    for token in ids:
        if image_token_id is not None and token == image_token_id:
            if k >= len(counts):
                raise ValueError(f"the chat template produced more image placeholders than the {len(counts)} images")
            out.extend([token] * counts[k])
            k += 1
        else:
            out.append(token)
    if k != len(counts):
        raise ValueError(f"the chat template produced {k} image placeholders for {len(counts)} images")
    return out
