"""The image-token guard with the hf engine: the prompts transformers consumes (placeholders against the
processor's features, its own get_rope_index positions) against the trainer's view, per row, before any
generation. The vLLM half is in test_vllm_rollout.py."""

import copy

import pytest
import torch

from verlvl.trainer.metrics import compute_vision_token_metrics
from verlvl.workers.config import RolloutConfig
from verlvl.workers.rollout.hf_rollout import HFRollout
from verlvl.workers.rollout.token_guard import (ImageTokenMismatch, first_difference, image_runs,
                                                position_problem, token_problem)


def checked(prompts):
    data = copy.deepcopy(prompts)
    data.meta_info["check_tokens"] = True
    return data


@pytest.fixture(scope="module")
def rollout(tiny_vl):
    processor, model = tiny_vl
    return HFRollout(model, processor.tokenizer, processor, RolloutConfig(n=1, response_length=2))


def test_the_dataset_view_passes_against_transformers(rollout, prompts):
    out = rollout.generate_sequences(checked(prompts))
    assert len(out) == len(prompts)


def test_a_position_the_model_would_compute_otherwise_stops_naming_row_file_and_position(rollout, prompts):
    data = checked(prompts)
    row = 2
    mask = data.batch["attention_mask"][row].bool()
    first_image = int((data.batch["input_ids"][row][mask] == rollout.image_token_id).float().argmax())
    column = int(mask.float().argmax()) + first_image + 1  # the second patch of the first image
    data.batch["position_ids"][row, 1:, column] += 1  # h and w of one patch shifted: an M-RoPE row dropped
    with pytest.raises(ImageTokenMismatch) as error:
        rollout.generate_sequences(data)
    message = str(error.value)
    assert data.non_tensor_batch["row_origin"][row] in message  # "FILE row N"
    assert ".parquet row " in message and f"differ from prompt token {first_image + 1}:" in message
    assert "1 prompt(s)" in message  # only the corrupted row


def test_a_missing_placeholder_stops_before_generate_would_fail_in_the_model(rollout, prompts):
    data = checked(prompts)
    mask = data.batch["attention_mask"][1].bool()
    placeholders = torch.nonzero(data.batch["input_ids"][1] == rollout.image_token_id).flatten()
    data.batch["input_ids"][1, placeholders[0]] = rollout.pad_id  # one patch fewer than the image has
    assert mask.any()
    with pytest.raises(ImageTokenMismatch, match=r"row \d+: image placeholder runs of \[\d+\] tokens, but the "
                                                  r"image processor makes \[\d+\] features"):
        rollout.generate_sequences(data)


def test_the_guard_runs_only_when_asked(rollout, prompts):
    data = copy.deepcopy(prompts)
    data.batch["position_ids"][0] += 1  # wrong, but nobody asked to check
    assert len(rollout.generate_sequences(data)) == len(prompts)


def test_token_differences_are_located_and_shown():
    assert first_difference([1, 2, 3], [1, 2, 3]) is None
    assert first_difference([1, 2, 3], [1, 5, 3]) == 1
    assert first_difference([1, 2], [1, 2, 3]) == 2
    message = token_problem([7, 8, 9, 9, 9, 4], [7, 8, 9, 4], describe=lambda t: f"<{t}>")
    assert message.startswith("prompt token 3 differs (engine 6 tokens, trainer 4)")
    assert "engine [... <8> <9> <9> <9> <4> ...] vs trainer [... <8> <9> <4> ...]" in message
    assert token_problem([1, 2], [1, 2]) == ""
    assert image_runs([5, 9, 9, 5, 9], 9) == [(1, 2), (4, 1)]
    same = torch.arange(6).view(3, 2)
    assert position_problem(same, same.clone()) == ""
    assert "shape (3, 2) in the engine and (3, 3)" in position_problem(same, torch.zeros(3, 3))


def test_sampled_vision_tokens_are_counted_within_the_response_mask():
    from verlvl.protocol import DataProto

    batch = DataProto.from_dict({"responses": torch.tensor([[5, 99, 7], [99, 1, 99]]),
                                 "response_mask": torch.tensor([[1, 1, 1], [1, 1, 0]])})
    assert compute_vision_token_metrics(batch, torch.tensor([99])) == {"rollout/sampled_vision_tokens": 2.0}
    assert compute_vision_token_metrics(batch, torch.tensor([], dtype=torch.long)) == {}
