"""Loading Qwen-VL processors, with or without torchvision.

transformers 5 builds Qwen2(.5)-VL processors with a video processor that needs torchvision, which has
no CPU wheel for our torch. The image-only processors here share the real classes' names and code,
so a folder they save loads with `AutoProcessor` on a machine with torchvision, unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
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


VIDEO_PROCESSOR_FILE = "video_preprocessor_config.json"
_VIDEO_KEYS = ["patch_size", "temporal_patch_size", "merge_size", "size", "min_pixels", "max_pixels",
               "image_mean", "image_std", "do_resize", "do_rescale", "rescale_factor", "do_normalize",
               "do_convert_rgb"]


def write_video_processor_config(path: str | Path, image_processor) -> None:
    """What AutoProcessor needs on a machine with torchvision to build the video half of the processor
    (the real checkpoints ship this file; the image-only processor cannot write it itself). The pixel
    bounds travel as `size` (transformers 5 has no min_pixels/max_pixels attributes)."""
    settings = image_processor.to_dict()
    config = {k: settings[k] for k in _VIDEO_KEYS if settings.get(k) is not None}
    config["video_processor_type"] = "Qwen2VLVideoProcessor"
    (Path(path) / VIDEO_PROCESSOR_FILE).write_text(json.dumps(config, indent=2, default=list))


def lacks_video_processor(path: str | Path) -> bool:
    """A local Qwen-VL folder in which transformers finds no video processor settings (saved by
    transformers without torchvision): the full processor, as vLLM builds it, fails to load from it."""
    path = Path(path)
    if not path.is_dir() or model_type_of(path) not in IMAGE_ONLY_PROCESSORS:
        return False
    if (path / VIDEO_PROCESSOR_FILE).is_file() or (path / "preprocessor_config.json").is_file():
        return False  # transformers reads the video settings from either
    nested = path / "processor_config.json"
    return not (nested.is_file() and "video_processor" in json.loads(nested.read_text()))


def video_processor_view(path: str | Path, root: str | Path) -> Path:
    """A folder under `root` that shows the model folder `path` plus a video processor config written from
    its image processor's settings: a link to every entry of `path`, and that one file. The model folder
    is not written to. The view's name depends only on the folder's path and listing, so every process
    (and every run, for vLLM's compile cache, which hashes the model path) gets the same one."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    path, root = Path(path).resolve(), Path(root)
    entries = sorted(path.iterdir())
    listing = [str(path)] + [f"{e.name}:{e.stat().st_size}:{e.stat().st_mtime_ns}" for e in entries]
    digest = hashlib.sha256("\n".join(listing).encode()).hexdigest()[:16]
    view = root / f"{path.name}-{digest}"
    if view.is_dir():
        return view
    root.mkdir(parents=True, exist_ok=True)
    draft = Path(tempfile.mkdtemp(dir=root, prefix=".draft-"))
    for entry in entries:
        (draft / entry.name).symlink_to(entry)
    write_video_processor_config(draft, Qwen2VLImageProcessorPil.from_pretrained(path))
    try:
        os.rename(draft, view)  # atomic: a view is complete or absent
    except OSError:
        if not view.is_dir():
            raise
        shutil.rmtree(draft)  # another process made the same view first
    return view


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


def use_chat_template(tokenizer, processor, template: str | None) -> None:
    """model.custom_chat_template (veRL's): the tokenizer's and the processor's template, when given."""
    if template is None:
        return
    tokenizer.chat_template = template
    if processor is not None:
        processor.chat_template = template


def load_tokenizer(path: str | Path, **kwargs):
    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
