"""Tiny Qwen-VL checkpoints built offline load like hub checkpoints; our position ids equal the model's."""

import json

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoTokenizer

from verlvl.models.processor import load_processor
from verlvl.models.rope import qwen_vl_position_ids
from verlvl.models.tiny import TinyVLConfig, build_tiny_qwen_vl


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen2_vl"])
def test_tiny_checkpoint_loads_like_a_hub_one(tmp_path, family):
    path = build_tiny_qwen_vl(tmp_path / family, TinyVLConfig(family=family))
    model = AutoModelForImageTextToText.from_pretrained(path)
    assert model.config.model_type == family
    n_params = sum(p.numel() for p in model.parameters())
    assert 1e5 < n_params < 5e6
    text = model.config.text_config
    assert text.hidden_size // text.num_attention_heads >= 32  # vLLM's CPU attention needs it
    processor = load_processor(path)  # no torchvision here: the image-only processor
    assert type(processor).__name__ == json.loads((path / "processor_config.json").read_text())["processor_class"]
    assert (path / "video_preprocessor_config.json").exists()  # what AutoProcessor needs with torchvision
    tokenizer = AutoTokenizer.from_pretrained(path)
    for special in ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>", "<|vision_end|>"):
        assert len(tokenizer.encode(special, add_special_tokens=False)) == 1, special
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert "<|vision_start|><|image_pad|><|vision_end|>What colour?<|im_end|>\n<|im_start|>assistant\n" in prompt
    inputs = processor(text=[prompt], images=[Image.new("RGB", (56, 56), "red")], return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3 or tokenizer.eos_token_id in out[0].tolist()


def test_tiny_build_is_seeded_and_reused(tmp_path):
    a = build_tiny_qwen_vl(tmp_path / "a", TinyVLConfig(seed=3))
    b = build_tiny_qwen_vl(tmp_path / "b", TinyVLConfig(seed=3))
    wa = AutoModelForImageTextToText.from_pretrained(a).state_dict()
    wb = AutoModelForImageTextToText.from_pretrained(b).state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    stamp = (a / "model.safetensors").stat().st_mtime_ns
    build_tiny_qwen_vl(a, TinyVLConfig(seed=3))  # same config: not rebuilt
    assert (a / "model.safetensors").stat().st_mtime_ns == stamp


def test_position_ids_equal_models_get_rope_index(tiny_vl):
    processor, model = tiny_vl
    messages = [
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "a"}, {"type": "image"},
                                      {"type": "text", "text": "Find x."}]}],
        [{"role": "user", "content": "text only, longer than the others to shift the padding"}],
        [{"role": "user", "content": [{"type": "text", "text": "b"}, {"type": "image"}]}],
    ]
    texts = [processor.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in messages]
    images = [Image.new("RGB", (112, 56), "red"), Image.new("RGB", (56, 84), "blue"), Image.new("RGB", (140, 140))]
    processor.tokenizer.padding_side = "left"
    inputs = processor(text=texts, images=images, return_tensors="pt", padding=True)
    expected, _ = model.model.get_rope_index(inputs["input_ids"], inputs["mm_token_type_ids"],
                                             image_grid_thw=inputs["image_grid_thw"],
                                             attention_mask=inputs["attention_mask"])
    grids = inputs["image_grid_thw"]
    per_row_grids = [grids[0:2], None, grids[2:3]]
    for row in range(3):
        ours = qwen_vl_position_ids(inputs["input_ids"][row], inputs["attention_mask"][row], processor.image_token_id,
                                    per_row_grids[row], spatial_merge_size=2)
        assert torch.equal(ours, expected[:, row]), row
