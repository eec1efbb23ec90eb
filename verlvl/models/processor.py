"""Loading Qwen-VL processors, with or without torchvision.

transformers 5 builds Qwen2(.5)-VL processors with a video processor that needs torchvision, which has
no CPU wheel for our torch. The image-only processors here share the real classes' names and code,
so a folder they save loads with `AutoProcessor` on a machine with torchvision, unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoProcessor, AutoTokenizer
from transformers.models.qwen2_5_vl import processing_qwen2_5_vl
from transformers.models.qwen2_vl import processing_qwen2_vl
from transformers.processing_utils import ProcessorMixin


def _image_only(base):
    class ImageOnly(base):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token = getattr(tokenizer, "image_token", "<|image_pad|>")
            self.video_token = getattr(tokenizer, "video_token", "<|video_pad|>")
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    ImageOnly.__name__ = ImageOnly.__qualname__ = base.__name__  # saved as the real class
    return ImageOnly


IMAGE_ONLY_PROCESSORS = {
    "qwen2_5_vl": _image_only(processing_qwen2_5_vl.Qwen2_5_VLProcessor),
    "qwen2_vl": _image_only(processing_qwen2_vl.Qwen2VLProcessor),
}


def build_processor(family: str, image_processor, tokenizer):
    """An image-only processor of the given family (works without torchvision)."""
    if family not in IMAGE_ONLY_PROCESSORS:
        raise ValueError(f"no processor for model family {family!r}; known: {sorted(IMAGE_ONLY_PROCESSORS)}")
    return IMAGE_ONLY_PROCESSORS[family](image_processor, tokenizer, chat_template=tokenizer.chat_template)


def write_video_processor_config(path: str | Path, image_processor) -> None:
    """What AutoProcessor needs on a machine with torchvision to build the video half of the processor
    (the real checkpoints ship this file; the image-only processor cannot write it itself)."""
    keys = ["patch_size", "temporal_patch_size", "merge_size", "min_pixels", "max_pixels", "image_mean",
            "image_std", "do_resize", "do_rescale", "rescale_factor", "do_normalize", "do_convert_rgb"]
    config = {k: getattr(image_processor, k) for k in keys if getattr(image_processor, k, None) is not None}
    config["video_processor_type"] = "Qwen2VLVideoProcessor"
    (Path(path) / "video_preprocessor_config.json").write_text(json.dumps(config, indent=2, default=list))


def model_type_of(path: str | Path) -> str | None:
    config = Path(path) / "config.json"
    return json.loads(config.read_text()).get("model_type") if config.is_file() else None


def load_processor(path: str | Path, **kwargs):
    """The model's processor; for Qwen-VL without torchvision, the image-only one. Returns None for
    text-only models (use load_tokenizer)."""
    family = model_type_of(path)
    if family is not None and family not in IMAGE_ONLY_PROCESSORS and "vl" not in family:
        return None  # a text-only model: AutoProcessor would hand back its tokenizer
    try:
        return AutoProcessor.from_pretrained(path, **kwargs)
    except (ImportError, OSError, ValueError, TypeError):
        # No torchvision (ImportError), or a folder without a video processor config (OSError).
        if family not in IMAGE_ONLY_PROCESSORS:
            raise
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(path, **kwargs)
    return build_processor(family, image_processor, tokenizer)


def load_tokenizer(path: str | Path, **kwargs):
    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
