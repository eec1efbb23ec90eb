"""The image-token guard: per sample, the prompt an engine consumed equals the trainer's view of it.

The trainer trains on its own view of each prompt (image placeholders expanded to the patch count, 3-D
M-RoPE position ids computed by models/rope.py); the engine builds its own (vLLM expands the placeholders
with its processor, transformers computes positions with the model's get_rope_index). Where they disagree
the update learns from log-probs of a sequence the engine never saw. Each engine hands this module what
it consumed; a difference stops the run naming the row, its data file and the first differing position.
"""

from __future__ import annotations

import torch

from verlvl.protocol import DataProto


class ImageTokenMismatch(ValueError):
    """The rollout engine and the trainer disagree about a prompt's tokens or positions."""


def trainer_view(data: DataProto, row: int) -> tuple[list[int], torch.Tensor]:
    """The trainer's tokens of one prompt row (padding removed) and their position ids ((3, L) or (L,))."""
    mask = data.batch["attention_mask"][row].bool()
    ids = data.batch["input_ids"][row][mask].tolist()
    positions = data.batch["position_ids"][row][..., mask]
    return ids, positions.cpu()


def row_name(data: DataProto, row: int) -> str:
    """`FILE row N` where the dataset said so, else the row's index in this batch."""
    origin = data.non_tensor_batch.get("row_origin")
    return str(origin[row]) if origin is not None and origin[row] else f"batch row {row}"


def first_difference(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def token_problem(engine_ids: list[int], trainer_ids: list[int], describe=str) -> str:
    """'' when the two token lists are equal, else where and how they first differ."""
    at = first_difference(engine_ids, trainer_ids)
    if at is None:
        return ""

    def window(ids):
        return " ".join(describe(t) for t in ids[max(0, at - 2):at + 3]) or "(end)"

    return (f"prompt token {at} differs (engine {len(engine_ids)} tokens, trainer {len(trainer_ids)}): "
            f"engine [... {window(engine_ids)} ...] vs trainer [... {window(trainer_ids)} ...]")


def position_problem(engine_positions: torch.Tensor, trainer_positions: torch.Tensor) -> str:
    """'' when the position ids agree, else the first token position where they differ."""
    engine_positions = engine_positions.reshape(-1, engine_positions.shape[-1]).long().cpu()
    trainer_positions = trainer_positions.reshape(-1, trainer_positions.shape[-1]).long().cpu()
    if engine_positions.shape != trainer_positions.shape:
        return (f"position ids have shape {tuple(engine_positions.shape)} in the engine and "
                f"{tuple(trainer_positions.shape)} in the trainer")
    differs = (engine_positions != trainer_positions).any(0)
    if not differs.any():
        return ""
    at = int(differs.float().argmax())
    return (f"3-D position ids differ from prompt token {at}: engine {engine_positions[:, at].tolist()} vs "
            f"trainer {trainer_positions[:, at].tolist()}")


def image_runs(ids: list[int], image_token_id: int) -> list[tuple[int, int]]:
    """(offset, length) of each run of image placeholder tokens."""
    runs, start = [], None
    for i, token in enumerate(ids + [None]):
        if token == image_token_id and start is None:
            start = i
        elif token != image_token_id and start is not None:
            runs.append((start, i - start))
            start = None
    return runs


def raise_if_any(problems: list[tuple[str, str]], engine: str) -> None:
    """Stop with every (row, problem), or do nothing when there are none."""
    if not problems:
        return
    lines = [f"{where}: {what}" for where, what in problems[:8]]
    more = f"\n  ... and {len(problems) - 8} more row(s)" if len(problems) > 8 else ""
    raise ImageTokenMismatch(
        f"the {engine} rollout and the trainer disagree about {len(problems)} prompt(s), so the update would "
        "train on sequences the engine never saw:\n  " + "\n  ".join(lines) + more + "\n"
        "Usual causes: the engine processes images with other pixel limits than the data was prepared with "
        "(data.min_pixels / data.max_pixels against the model's image processor, or "
        "engine_kwargs.vllm.mm_processor_kwargs), a chat template that adds its own image placeholders, or a "
        "model whose position ids this version does not compute. Set "
        "actor_rollout_ref.rollout.check_tokens=off only if you know the engine is right.")


def check_hf(model, data: DataProto, pixel_inputs: dict, image_token_id: int | None, merge_size: int) -> None:
    """transformers' view: each row's image placeholders must match the features its pixels give, and the
    position ids generate computes (the model's get_rope_index) must equal the trainer's."""
    problems = []
    grids = pixel_inputs.get("image_grid_thw")
    grids = grids.cpu() if grids is not None else torch.zeros(0, 3, dtype=torch.long)
    media = data.non_tensor_batch.get("multi_modal_data")
    taken = 0
    for row in range(len(data)):
        ids, _ = trainer_view(data, row)
        n_images = len((media[row] or {}).get("image") or []) if media is not None else 0
        features = (grids[taken:taken + n_images].prod(-1) // merge_size ** 2).tolist()
        taken += n_images
        if image_token_id is None:
            continue
        runs = [length for _, length in image_runs(ids, image_token_id)]
        if runs != features:
            problem = f"image placeholder runs of {runs} tokens, but the image processor makes {features} features"
            problems.append((row_name(data, row), problem + " of this row's images"))
    raise_if_any(problems, "hf")
    rope_index = getattr(getattr(model, "model", model), "get_rope_index", None)
    if rope_index is None or data.batch["position_ids"].dim() != 3:
        return  # a text-only model: 1-D positions, which generate derives from the mask as we do
    input_ids, mask = data.batch["input_ids"], data.batch["attention_mask"]
    token_types = (input_ids == image_token_id).int() if image_token_id is not None else torch.zeros_like(input_ids)
    engine, _ = rope_index(input_ids, token_types, image_grid_thw=pixel_inputs.get("image_grid_thw"),
                           attention_mask=mask)
    for row in range(len(data)):
        _, trainer_positions = trainer_view(data, row)
        problem = position_problem(engine[:, row][:, mask[row].bool()], trainer_positions)
        if problem:
            problems.append((row_name(data, row), problem))
    raise_if_any(problems, "hf")


def check_vllm(engine, data: DataProto, outputs: list, image_token_id: int | None, describe=str) -> None:
    """vLLM's view: the prompt tokens it consumed (its processor expands each image placeholder) must equal
    the trainer's, and the M-RoPE positions its model computes for them must equal the trainer's."""
    problems, requests = [], []
    grids = data.non_tensor_batch.get("multi_modal_inputs")
    for row, output in enumerate(outputs):
        ids, _ = trainer_view(data, row)
        engine_ids = [int(t) for t in output.prompt_token_ids]
        problem = token_problem(engine_ids, ids, describe)
        if problem:
            problems.append((row_name(data, row), problem))
            continue
        grid = (grids[row] or {}).get("image_grid_thw") if grids is not None else None
        runs = image_runs(engine_ids, image_token_id) if image_token_id is not None else []
        requests.append((row, engine_ids, _image_features(runs, grid)))
    raise_if_any(problems, "vllm")
    positions = engine.collective_rpc(_mrope_positions, args=([(ids, feats) for _, ids, feats in requests],))[0]
    if positions is None:
        return  # a model without M-RoPE
    for (row, _, _), engine_positions in zip(requests, positions):
        problem = position_problem(engine_positions, trainer_view(data, row)[1])
        if problem:
            problems.append((row_name(data, row), problem))
    raise_if_any(problems, "vllm")


def _image_features(runs: list[tuple[int, int]], grid) -> list:
    """The fields of vLLM's MultiModalFeatureSpec its Qwen-VL models read for positions: where each image's
    tokens start, and the image's (t, h, w) patch grid (the trainer's; the token counts were compared)."""
    from types import SimpleNamespace

    grids = grid.tolist() if grid is not None else []
    return [SimpleNamespace(modality="image", mm_position=SimpleNamespace(offset=offset, length=length),
                            data={"image_grid_thw": SimpleNamespace(data=torch.tensor(thw))})
            for (offset, length), thw in zip(runs, grids)]


def _mrope_positions(worker, requests: list) -> list | None:
    """Runs in the engine's worker: its model's own M-RoPE positions of each (tokens, features)."""
    method = getattr(worker.get_model(), "get_mrope_input_positions", None)
    if method is None:
        return None
    return [torch.as_tensor(method(tokens, features)[0]) for tokens, features in requests]
