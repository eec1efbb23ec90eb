"""Tiny, seeded Qwen2-VL / Qwen2.5-VL checkpoints built offline: tokenizer, processor and model in one folder."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from verlvl.models.chat_template import QWEN_VL_CHAT_TEMPLATE

# Qwen's special tokens, in Qwen's order (ids follow the trained vocabulary here, not 151643...).
QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
]

# Text the byte-level BPE is trained on: chat scaffolding, digits, maths and the words of the built-in
# tasks, so that prompts and answers take few tokens.
_CORPUS = [
    "system user assistant You are a helpful assistant.",
    "What colour is the shape in the image? Answer with one word. red green blue yellow purple orange",
    "How many shapes are in the image? circle square triangle one two three four five six seven eight nine",
    "Find x. Round to the nearest tenth, if necessary. Find the area of the figure. Find the measure of angle",
    "You FIRST think about the reasoning process as an internal monologue and then provide the final answer. "
    "The reasoning process MUST BE enclosed within <think> </think> tags. The final answer MUST BE put in \\boxed{}.",
    "<think> </think> \\boxed{ } \\frac{1}{2} \\sqrt{3} \\pi x = y + - * / ^ ( ) [ ] { } . , : ; ! ? ' \"",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 20 25 30 45 60 90 100 180 360",
    "the a an of in on is are and to with that this it for as by at from or not",
]


@dataclass(frozen=True)
class TinyVLConfig:
    """Sizes of a tiny Qwen-VL. head_dim = hidden // heads must be >= 32 for vLLM's CPU attention;
    mrope_section must sum to head_dim // 2."""

    family: str = "qwen2_5_vl"  # or "qwen2_vl"
    vocab_size: int = 320  # BPE target; small, so a random policy says a task word now and then
    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    vision_hidden_size: int = 64
    vision_heads: int = 2
    vision_depth: int = 1
    vision_intermediate_size: int = 128
    max_position_embeddings: int = 4096
    min_pixels: int = 28 * 28
    max_pixels: int = 224 * 224
    seed: int = 0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def mrope_section(self) -> list[int]:
        half = self.head_dim // 2
        t = half // 4
        h = (half - t) // 2
        return [t, h, half - t - h]


BUILD_VERSION = 2  # bump when the builder's output changes, so cached tiny models are rebuilt


def _stamp(config: TinyVLConfig) -> dict:
    return {"build_version": BUILD_VERSION, **asdict(config)}


def _up_to_date(path: Path, config: TinyVLConfig) -> bool:
    marker = path / "verlvl_tiny.json"
    return marker.exists() and json.loads(marker.read_text()) == _stamp(config)


def build_tokenizer(config: TinyVLConfig):
    """A byte-level BPE trained here on a small corpus, with Qwen's special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=config.vocab_size, special_tokens=QWEN_SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=QWEN_SPECIAL_TOKENS[1:], model_max_length=32768)
    # The built-in task's answers are single tokens: an untrained policy then samples them by chance,
    # which is all the signal RL starts from (as two BPE pieces, "re"+"d" would almost never appear).
    from verlvl.data.shapes_task import COLORS, SHAPES

    fast.add_tokens(list(COLORS) + list(SHAPES))
    fast.chat_template = QWEN_VL_CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


def build_image_processor(config: TinyVLConfig):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(min_pixels=config.min_pixels, max_pixels=config.max_pixels, patch_size=14,
                                    temporal_patch_size=2, merge_size=2)


def build_model(config: TinyVLConfig, tokenizer):
    from transformers import AutoModelForImageTextToText

    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in [
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")]}
    vocab = len(tokenizer)
    text_config = dict(
        vocab_size=vocab, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads, max_position_embeddings=config.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": config.mrope_section()},
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"), eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    vision_config = dict(depth=config.vision_depth, hidden_size=config.vision_hidden_size,
                         num_heads=config.vision_heads, intermediate_size=config.vision_intermediate_size,
                         patch_size=14, spatial_merge_size=2, temporal_patch_size=2, in_chans=3)
    if config.family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig

        vision_config.update(out_hidden_size=config.hidden_size, fullatt_block_indexes=[config.vision_depth - 1],
                             window_size=112, tokens_per_second=2)
        hf_config = Qwen2_5_VLConfig(text_config=text_config, vision_config=vision_config, **ids)
    elif config.family == "qwen2_vl":
        from transformers import Qwen2VLConfig

        vision_config = dict(depth=config.vision_depth, embed_dim=config.vision_hidden_size,
                             num_heads=config.vision_heads,
                             mlp_ratio=config.vision_intermediate_size // config.vision_hidden_size,
                             hidden_size=config.hidden_size, patch_size=14,
                             spatial_merge_size=2, temporal_patch_size=2, in_channels=3)
        hf_config = Qwen2VLConfig(text_config=text_config, vision_config=vision_config, **ids)
    else:
        raise ValueError(f"unknown tiny model family {config.family!r}; use 'qwen2_5_vl' or 'qwen2_vl'")
    hf_config.tie_word_embeddings = False
    torch.manual_seed(config.seed)
    model = AutoModelForImageTextToText.from_config(hf_config, dtype=torch.float32)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.pad_token_id]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def build_tiny_qwen_vl(path: str | Path, config: TinyVLConfig | None = None, overwrite: bool = False) -> Path:
    """Write a complete tiny checkpoint (model, tokenizer, processor, chat template) to `path`; it
    loads through the same calls as a hub checkpoint. Returns `path`. Reuses an existing one built
    with the same config unless `overwrite`."""
    from verlvl.models.processor import build_processor, write_video_processor_config

    config = config or TinyVLConfig()
    path = Path(path)
    if not overwrite and _up_to_date(path, config):
        return path
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(config)
    processor = build_processor(config.family, build_image_processor(config), tokenizer)
    model = build_model(config, tokenizer)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    tokenizer.save_pretrained(path)
    write_video_processor_config(path, processor.image_processor)
    # written last: a half-written folder is rebuilt
    (path / "verlvl_tiny.json").write_text(json.dumps(_stamp(config), indent=1))
    return path


def build_tiny_qwen_text(path: str | Path, config: TinyVLConfig | None = None, overwrite: bool = False) -> Path:
    """A tiny text-only Qwen2 (AutoModelForCausalLM) with the same tokenizer, for text RL paths."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = config or TinyVLConfig(family="qwen2")
    path = Path(path)
    if not overwrite and _up_to_date(path, config):
        return path
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(config)
    hf_config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=config.hidden_size,
                            intermediate_size=config.intermediate_size, num_hidden_layers=config.num_hidden_layers,
                            num_attention_heads=config.num_attention_heads,
                            num_key_value_heads=config.num_key_value_heads,
                            max_position_embeddings=config.max_position_embeddings, tie_word_embeddings=False,
                            bos_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(config.seed)
    model = AutoModelForCausalLM.from_config(hf_config, dtype=torch.float32)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.pad_token_id]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "verlvl_tiny.json").write_text(json.dumps(_stamp(config), indent=1))
    return path
