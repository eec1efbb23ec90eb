"""RLDataset: parquet rows in veRL's schema to the two prompt views (engine and trainer) of each prompt."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import torch
from PIL import Image
from torch.utils.data import Dataset

from verlvl.data.config import DataConfig
from verlvl.data.images import DataError, decode_image, fit_image, fitted_size, open_image
from verlvl.data.sources import read_source
from verlvl.models.rope import qwen_vl_position_ids, text_position_ids
from verlvl.models.vision_inputs import expand_image_placeholders

log = logging.getLogger(__name__)
IMAGE_TAG = "<image>"
_TAG_SPLIT = re.compile(r"(<image>)")


@dataclass
class PromptPlan:
    """Everything about one row except decoded pixels: enough to check its length at load time."""

    where: str
    messages: list[dict]
    images: list[Image.Image]  # opened lazily (header only) until decoded
    sizes: list[tuple[int, int]]  # (width, height) after data.min_pixels / max_pixels
    engine_ids: list[int]  # one placeholder per image: what vLLM takes with the raw images
    trainer_ids: list[int]  # placeholders expanded to each image's token count
    image_grid_thw: torch.Tensor | None


def read_parquet_files(files: tuple[str, ...]) -> tuple[pa.Table, list[tuple[str, int]]]:
    """Concatenate parquet files (images stay encoded) and remember each row's file and row number."""
    if not files:
        raise DataError("no data files given: set data.train_files (and data.val_files) to parquet paths")
    tables, origin = [], []
    for file in files:
        table = read_source(str(file))  # parquet, JSON/JSONL, save_to_disk folder, name@split (verlvl.data.sources)
        if table.num_rows == 0:
            raise DataError(f"{file}: the file has no rows")
        tables.append(table)
        origin.extend((str(file), i) for i in range(table.num_rows))
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowInvalid as e:
        raise DataError(f"the files {list(files)} have incompatible columns: {e}") from e
    return table, origin


def to_messages(prompt: Any, where: str, prompt_key: str) -> list[dict]:
    """veRL's chat list, with each `<image>` tag turned into an image content part."""
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    if not isinstance(prompt, list) or not all(isinstance(m, dict) and "content" in m for m in prompt):
        raise DataError(f"{where}: column {prompt_key!r} must be a list of chat messages "
                        f"[{{'role': ..., 'content': ...}}], got {type(prompt).__name__}")
    messages = []
    for message in prompt:
        content = message["content"]
        if isinstance(content, str) and IMAGE_TAG in content:
            parts = [{"type": "image"} if piece == IMAGE_TAG else {"type": "text", "text": piece}
                     for piece in _TAG_SPLIT.split(content) if piece]
            messages.append({"role": message.get("role", "user"), "content": parts})
        else:
            messages.append({"role": message.get("role", "user"), "content": content})
    return messages


def count_image_parts(messages: list[dict]) -> int:
    return sum(1 for m in messages if isinstance(m["content"], list) for p in m["content"] if p.get("type") == "image")


class RLDataset(Dataset):
    """Rows of one or more parquet files as prompts ready for generation and training.

    Every row is checked when the dataset is made (tags match images, images open, prompt fits in
    data.max_prompt_length without cutting an image); overlong rows are filtered when
    data.filter_overlong_prompts is set, and every filtered row is logged with its file and row.
    """

    def __init__(self, files, tokenizer, processor, config: DataConfig, max_samples: int = -1):
        self.config, self.tokenizer, self.processor = config, tokenizer, processor
        self.table, self.origin = read_parquet_files(tuple([files] if isinstance(files, str) else files))
        self._check_columns()
        self.image_token = getattr(processor, "image_token", "<|image_pad|>") if processor else None
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token) if processor else None
        self.merge_size = getattr(processor.image_processor, "merge_size", 2) if processor else 2
        self.filtered: list[str] = []
        self.indices = self._check_rows()
        if max_samples is not None and max_samples > 0:
            self.indices = self.indices[:max_samples]

    def rows_without_ground_truth(self) -> list[str]:
        """`file row n` of every kept row whose reward_model has no ground_truth."""
        names = self.table.column_names
        column = self.table.column("reward_model").to_pylist() if "reward_model" in names else None
        missing = []
        for i in self.indices:
            value = column[i] if column is not None else None
            if not isinstance(value, dict) or value.get("ground_truth") is None:
                file, n = self.origin[i]
                missing.append(f"{file} row {n}")
        return missing

    # ---------------------------------------------------------------- load-time checks
    def _check_columns(self) -> None:
        names = self.table.column_names
        if self.config.prompt_key not in names:
            raise DataError(f"{self.origin[0][0]}: no column {self.config.prompt_key!r} (data.prompt_key); the "
                            f"file has {names}")
        self.has_images = self.config.image_key in names

    def _check_rows(self) -> list[int]:
        keep, limit = [], self.config.max_prompt_length
        for i in range(self.table.num_rows):
            plan = self.plan(i)
            n = len(plan.trainer_ids)
            if n <= limit:
                keep.append(i)
                continue
            if self.config.filter_overlong_prompts:
                self.filtered.append(f"{plan.where}: {n} prompt tokens > data.max_prompt_length={limit}")
                continue
            if self.config.truncation == "error":
                raise DataError(f"{plan.where}: the prompt has {n} tokens, more than data.max_prompt_length={limit}. "
                                "Raise data.max_prompt_length, lower data.max_pixels, set "
                                "data.filter_overlong_prompts=true, or data.truncation=left/right")
            cut = plan.trainer_ids[:n - limit] if self.config.truncation == "left" else plan.trainer_ids[limit:]
            if self.image_token_id is not None and self.image_token_id in cut:
                raise DataError(f"{plan.where}: truncating this {n}-token prompt to {limit} would cut image tokens; "
                                "raise data.max_prompt_length, lower data.max_pixels or set "
                                "data.filter_overlong_prompts=true")
            keep.append(i)
        if self.filtered:
            log.warning("filtered %d of %d rows whose prompts are longer than data.max_prompt_length=%d:\n  %s",
                        len(self.filtered), self.table.num_rows, limit, "\n  ".join(self.filtered[:20]))
        if not keep:
            raise DataError(f"every row of {sorted({f for f, _ in self.origin})} was filtered as longer than "
                            f"data.max_prompt_length={limit}")
        return keep

    # ---------------------------------------------------------------- one row
    def row(self, i: int) -> dict:
        return self.table.slice(i, 1).to_pylist()[0]

    def plan(self, i: int, row: dict | None = None, keep_images: bool = False) -> PromptPlan:
        row = row if row is not None else self.row(i)
        file, n = self.origin[i]
        where = f"{file} row {n}"
        messages = to_messages(row[self.config.prompt_key], where, self.config.prompt_key)
        raw_images = (row.get(self.config.image_key) or []) if self.has_images else []
        n_tags = count_image_parts(messages)
        if n_tags != len(raw_images):
            raise DataError(f"{where}: the prompt has {n_tags} {IMAGE_TAG} tag(s) but column "
                            f"{self.config.image_key!r} holds {len(raw_images)} image(s); they must match one to one")
        if raw_images and self.processor is None:
            raise DataError(f"{where}: the row has images but the model has no image processor (a text-only model?)")
        images = [open_image(v, f"{where} image {k}") for k, v in enumerate(raw_images)]
        sizes = [fitted_size(*img.size, self.config.min_pixels, self.config.max_pixels) for img in images]
        if not keep_images:  # load-time checks need only the sizes: do not hold file handles
            for img in images:
                img.close()
            images = []
        text = self._template(messages)
        engine_ids = self.tokenizer.encode(text, add_special_tokens=False)
        grid = self._grids(sizes)
        trainer_ids = self._expand(engine_ids, grid, where) if sizes else list(engine_ids)
        return PromptPlan(where, messages, images, sizes, engine_ids, trainer_ids, grid)

    def _template(self, messages: list[dict]) -> str:
        template_owner = self.processor if self.processor is not None else self.tokenizer
        return template_owner.apply_chat_template(messages, add_generation_prompt=True, tokenize=False,
                                                  **self.config.apply_chat_template_kwargs)

    def _grids(self, sizes: list[tuple[int, int]]) -> torch.Tensor | None:
        if not sizes:
            return None
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        ip = self.processor.image_processor
        grids = []
        for width, height in sizes:
            h, w = smart_resize(height, width, factor=ip.patch_size * ip.merge_size,
                                min_pixels=ip.size["shortest_edge"], max_pixels=ip.size["longest_edge"])
            grids.append([1, h // ip.patch_size, w // ip.patch_size])
        return torch.tensor(grids, dtype=torch.long)

    def _expand(self, engine_ids: list[int], grid: torch.Tensor, where: str) -> list[int]:
        counts = (grid.prod(-1) // self.merge_size**2).tolist()
        try:
            return expand_image_placeholders(engine_ids, self.image_token_id, counts)
        except ValueError as e:
            raise DataError(f"{where}: {e}") from None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> dict:
        i = self.indices[item]
        row = self.row(i)
        plan = self.plan(i, row, keep_images=True)
        trainer_ids, engine_ids = self._truncate(plan.trainer_ids, plan.engine_ids)
        length, pad = self.config.max_prompt_length, self.tokenizer.pad_token_id
        ids = torch.full((length,), pad, dtype=torch.long)
        mask = torch.zeros(length, dtype=torch.long)
        ids[length - len(trainer_ids):] = torch.tensor(trainer_ids, dtype=torch.long)  # left padding
        mask[length - len(trainer_ids):] = 1
        if self.processor is not None:
            position_ids = qwen_vl_position_ids(ids, mask, self.image_token_id, plan.image_grid_thw, self.merge_size)
        else:
            position_ids = text_position_ids(mask)
        images = [fit_image(decode_image(img, f"{plan.where} image {k}"), self.config.min_pixels,
                            self.config.max_pixels) for k, img in enumerate(plan.images)]
        out = {
            "input_ids": ids,
            "attention_mask": mask,
            "position_ids": position_ids,
            "raw_prompt_ids": engine_ids,
            "multi_modal_data": {"image": images},  # resized raw images: the engine view's half
            "multi_modal_inputs": {"image_grid_thw": plan.image_grid_thw} if images else {},
            "index": (row.get("extra_info") or {}).get("index", i),
            "row_origin": plan.where,
        }
        for key in dict.fromkeys(("data_source", "reward_model", "extra_info", "ability", self.config.reward_fn_key)):
            out[key] = row.get(key)
        if self.config.return_raw_chat:
            out["raw_prompt"] = plan.messages
        return out

    def _truncate(self, trainer_ids: list[int], engine_ids: list[int]) -> tuple[list[int], list[int]]:
        # Only text is ever cut (checked at load time), so both views lose the same text tokens.
        excess = len(trainer_ids) - self.config.max_prompt_length
        if excess <= 0:
            return trainer_ids, engine_ids
        if self.config.truncation == "left":
            return trainer_ids[excess:], engine_ids[excess:]
        return trainer_ids[:-excess], engine_ids[:-excess]
