"""Qwen-VL multimodal rotary position ids (3 x L), computed without the model, as the model computes them."""

from __future__ import annotations

import torch


def qwen_vl_position_ids(input_ids: torch.Tensor, attention_mask: torch.Tensor, image_token_id: int,
                         image_grid_thw: torch.Tensor | None, spatial_merge_size: int = 2) -> torch.Tensor:
    """(3, L) position ids of one (left- or right-padded) row, equal to the model's get_rope_index:
    text tokens advance all three axes together; each image's tokens get (t, h, w) grid positions
    offset by the running position, which then jumps by max(h, w). Padding gets 0."""
    valid = attention_mask.bool()
    ids = input_ids[valid]
    is_image = ids == image_token_id
    grids = iter(image_grid_thw.tolist() if image_grid_thw is not None else [])
    pieces, pos, i, n = [], 0, 0, ids.shape[0]
    while i < n:
        j = i
        while j < n and bool(is_image[j]) == bool(is_image[i]):
            j += 1
        if not is_image[i]:
            pieces.append(torch.arange(pos, pos + j - i).expand(3, -1))
            pos += j - i
        else:
            try:
                t, h, w = next(grids)
            except StopIteration:
                raise ValueError("more image-token runs in the prompt than images in image_grid_thw") from None
            h, w = h // spatial_merge_size, w // spatial_merge_size
            if t * h * w != j - i:
                raise ValueError(f"an image has {j - i} placeholder tokens but its grid {t}x{h}x{w} needs {t * h * w}")
            tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
            pieces.append(torch.stack([tt, hh, ww]).reshape(3, -1) + pos)
            pos += max(h, w)
        i = j
    out = torch.zeros(3, input_ids.shape[0], dtype=torch.long)
    if pieces:
        out[:, valid] = torch.cat(pieces, dim=1)
    return out


def text_position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """1-D position ids of a padded row for text-only models (padding gets 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0) * attention_mask.long()
