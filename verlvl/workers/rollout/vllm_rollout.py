"""The vllm rollout: a vLLM engine inside each actor process, given the actor's weights after every update.

Prompts go in as the engine view (token ids with one placeholder per image, plus the resized images);
what comes out has the hf rollout's layout (rollout/base.py). On CUDA (with free_cache_engine) the engine
sleeps between generations so the actor can train in the same memory: `switch()` builds the
HybridSwitch (verlvl/engine/hybrid.py) that wakes, syncs and puts it back to sleep around each
generation. vLLM's CPU backend has no sleep mode: there the engine stays awake and the switch only syncs.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist

from verlvl.engine.hybrid import SLEEP_TAGS, HybridSwitch
from verlvl.engine.lora import has_adapters, merged_weights
from verlvl.engine.state_dict import full_weights
from verlvl.models.processor import lacks_video_processor, video_processor_view
from verlvl.protocol import DataProto
from verlvl.utils.device import is_cuda_available
from verlvl.workers.config import RolloutConfig
from verlvl.workers.rollout.base import (build_rollout_batch, eos_ids_of, never_sampled_ids, pad_id_of,
                                         sampling_params)
from verlvl.workers.rollout.token_guard import check_vllm
from verlvl.workers.rollout.vllm_version import check_vllm_version

log = logging.getLogger(__name__)
# vLLM's CPU backend drops torch to 1 thread "for serving" (unless OMP_NUM_THREADS is set) and may replace
# torch.set_num_threads with a no-op: the actor, which trains in this process, keeps the real setter.
_set_torch_threads = torch.set_num_threads
IMAGE_PLACEHOLDER = "<|image_pad|>"  # Qwen-VL's; vLLM expands one per image to the image's patch count
SUPPRESS_BIAS = -100.0  # vLLM clamps logit_bias to [-100, 100]: e^-100 is 0 in every log-prob we compare


def engine_dtype(config: RolloutConfig, actor_dtype: torch.dtype) -> torch.dtype:
    """rollout.dtype, where auto means the actor's compute dtype."""
    return actor_dtype if config.dtype == "auto" else getattr(torch, config.dtype)


def engine_kwargs(config: RolloutConfig, model_path: str, actor_dtype: torch.dtype, on_cuda: bool,
                  world_size: int = 1) -> dict:
    """Keyword arguments for vllm.LLM from the rollout config (engine_kwargs.vllm.* win)."""
    kwargs = dict(
        model=model_path, dtype=str(engine_dtype(config, actor_dtype)).removeprefix("torch."), seed=config.seed,
        load_format=config.load_format,
        tensor_parallel_size=config.tensor_model_parallel_size,
        max_model_len=config.max_model_len or config.prompt_length + config.response_length,
        max_num_batched_tokens=config.max_num_batched_tokens, max_num_seqs=config.max_num_seqs,
        enable_prefix_caching=config.enable_prefix_caching, enable_chunked_prefill=config.enable_chunked_prefill,
        enforce_eager=config.enforce_eager, logprobs_mode="processed_logprobs",  # after temperature / top-p
        disable_log_stats=True,
    )
    if config.limit_images is not None:
        kwargs["limit_mm_per_prompt"] = {"image": config.limit_images}
    if world_size > 1:  # every actor rank runs an engine on the process group that already exists
        if world_size % config.tensor_model_parallel_size:
            raise ValueError(f"actor_rollout_ref.rollout.tensor_model_parallel_size="
                             f"{config.tensor_model_parallel_size} does not divide the {world_size} actor workers")
        kwargs.update(distributed_executor_backend="external_launcher",
                      data_parallel_size=world_size // config.tensor_model_parallel_size)
    if on_cuda:
        kwargs.update(gpu_memory_utilization=config.gpu_memory_utilization,
                      enable_sleep_mode=config.free_cache_engine)
    else:
        kwargs["kv_cache_memory_bytes"] = int(config.cpu_kv_cache_gb * (1 << 30))
    kwargs.update((config.engine_kwargs or {}).get("vllm") or {})
    return kwargs


def sleep_mode_of(kwargs: dict, on_cuda: bool) -> bool:
    """Whether the engine built from `kwargs` sleeps between generations: on CUDA, with enable_sleep_mode
    (free_cache_engine, unless engine_kwargs.vllm says otherwise). vLLM's CPU backend has no sleep mode."""
    return on_cuda and bool(kwargs.get("enable_sleep_mode"))


def engine_model_path(model_path: str) -> str:
    """The folder vLLM loads. vLLM builds the full Qwen-VL processor, video part included, which fails on
    a folder saved without one ("Can't load video processor"; transformers without torchvision saves it
    so, and the hf rollout loads it fine): then a view of it with that config (models/processor.py)."""
    if not lacks_video_processor(model_path):
        return model_path
    view = video_processor_view(model_path, Path(tempfile.gettempdir()) / "verlvl-model-views")
    log.info("%s has no video processor config, which vLLM needs: vLLM loads %s, which links to its files "
             "and adds one made from the image processor's settings", model_path, view)
    return str(view)


class VLLMRollout:
    def __init__(self, model_path: str, tokenizer, config: RolloutConfig, actor_dtype: torch.dtype,
                 generation_config=None):
        check_vllm_version()
        # The engine runs in this process: the weight iterator of a sync is handed to it by reference.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")  # our workers set their own threads
        from vllm import LLM

        self.config = config
        self.on_cuda = is_cuda_available()
        self.eos_ids = eos_ids_of(generation_config, tokenizer)
        self.pad_id = pad_id_of(tokenizer, self.eos_ids)
        self.logit_bias = {i: SUPPRESS_BIAS for i in never_sampled_ids(tokenizer)}
        self.tokenizer = tokenizer
        self.image_token_id = tokenizer.get_vocab().get(IMAGE_PLACEHOLDER)
        self.dtype = engine_dtype(config, actor_dtype)
        world = dist.get_world_size() if dist.is_initialized() else 1
        # What the worker chose for this process. vLLM serves on 1 thread (2 made generation 18% slower here,
        # 1.11 vs 0.94 s) and the actor gets its threads back after every generation.
        self.threads = torch.get_num_threads()
        started = time.perf_counter()
        kwargs = engine_kwargs(config, engine_model_path(model_path), actor_dtype, self.on_cuda, world)
        self.sleep_mode = sleep_mode_of(kwargs, self.on_cuda)
        with _local_rank_zero(self.on_cuda):
            self.engine = LLM(**kwargs)
        self._restore_threads()
        self._switch: HybridSwitch | None = None
        if self.sleep_mode:
            # level 2 frees the checkpoint's weights too: the first rollout_mode wakes and syncs the actor's
            self.engine.sleep(level=2)
        log.info("vLLM engine ready in %.1f s", time.perf_counter() - started)

    def _restore_threads(self) -> None:
        if torch.get_num_threads() != self.threads:
            _set_torch_threads(self.threads)

    # ------------------------------------------------------------------ the rollout/train switch
    def switch(self, sync_weights: Callable[[], None], offload_actor: Callable[[], None] | None = None,
               load_actor: Callable[[], None] | None = None, empty_cache: Callable[[], None] = lambda: None,
               lora: bool = False) -> HybridSwitch:
        """The switch around this engine (built once): `with switch.generating(): generate_sequences(...)`.
        `sync_weights` is typically `lambda: rollout.sync_weights(actor_model)`."""
        if self._switch is not None:
            raise RuntimeError("VLLMRollout.switch() was called before: one switch tracks the engine's state")
        self._switch = HybridSwitch(self.engine, sync_weights, offload_actor, load_actor, empty_cache,
                                    sleep_mode=self.sleep_mode, lora=lora, asleep=self.sleep_mode)
        return self._switch

    def _require_awake(self, tags: frozenset[str], doing: str) -> None:
        if not self.sleep_mode:
            return
        asleep = SLEEP_TAGS if self._switch is None else self._switch.sleeping_tags
        if self._switch is None or tags & asleep or (tags == SLEEP_TAGS and self._switch.asleep):
            raise RuntimeError(f"{doing} while the vLLM engine sleeps; run it inside "
                               "rollout.switch(...).generating() (or with free_cache_engine=False)")

    # ------------------------------------------------------------------ weights
    @torch.no_grad()
    def sync_weights(self, model: torch.nn.Module) -> None:
        """Load the actor's current weights, streamed in buckets of update_weights_bucket_megabytes, and
        forget everything computed with the old ones (prefix and encoder caches)."""
        self._require_awake(frozenset({"weights"}), "a weight sync")
        device = torch.device("cuda", torch.cuda.current_device()) if self.on_cuda else None
        weights = full_weights(model, self.config.update_weights_bucket_megabytes << 20, self.dtype, device)
        if has_adapters(model):  # LoRA: the engine holds the plain model; it gets W + scaling * B @ A
            weights = merged_weights(model, weights)
        self.engine.collective_rpc("reload_weights", kwargs={"weights_iterator": weights,
                                                             "is_checkpoint_format": True})
        self.engine.reset_prefix_cache()
        # the scheduler's and the runner's encoder caches: else an image embedding outlives its weights
        self.engine.llm_engine.reset_encoder_cache()

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate_sequences(self, prompts: DataProto) -> DataProto:
        """`n` responses per prompt (rows repeated, interleaved) in the hf rollout's layout."""
        from vllm import SamplingParams

        params = sampling_params(self.config, prompts.meta_info)
        n, r = params["n"], self.config.response_length
        sampling = SamplingParams(
            n=n, max_tokens=r, temperature=params["temperature"] if params["do_sample"] else 0.0,
            top_p=params["top_p"], top_k=params["top_k"] or 0,
            logprobs=0, stop_token_ids=None if self.config.ignore_eos else self.eos_ids,
            ignore_eos=self.config.ignore_eos, logit_bias=self.logit_bias or None, detokenize=False)
        self._require_awake(SLEEP_TAGS, "generate_sequences")
        try:
            outputs = self.engine.generate(self.engine_inputs(prompts), sampling, use_tqdm=False)
        finally:
            self._restore_threads()
        if prompts.meta_info.get("check_tokens"):  # the image-token guard (token_guard.py)
            check_vllm(self.engine, prompts, outputs, self.image_token_id,
                       lambda t: repr(self.tokenizer.convert_ids_to_tokens(t)))
        samples = [o for request in outputs for o in request.outputs]  # prompt-major: matches repeat(interleave)
        responses = torch.full((len(samples), r), self.pad_id, dtype=torch.long)
        response_mask = torch.zeros(len(samples), r, dtype=torch.long)
        log_probs = torch.zeros(len(samples), r)
        for row, sample in enumerate(samples):
            ids = list(sample.token_ids)[:r]
            responses[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
            response_mask[row, :len(ids)] = 1
            log_probs[row, :len(ids)] = torch.tensor([lp[t].logprob for t, lp in zip(ids, sample.logprobs)])
        data = prompts.repeat(n, interleave=True) if n > 1 else prompts
        device = prompts.batch["input_ids"].device  # the worker's: the prompts crossed the device boundary
        return build_rollout_batch(data, responses.to(device), response_mask.to(device), log_probs.to(device))

    @staticmethod
    def engine_inputs(prompts: DataProto) -> list[dict]:
        """The engine view of each prompt: ids with one placeholder per image, and the images."""
        if "raw_prompt_ids" not in prompts.non_tensor_batch:
            raise KeyError("the vllm rollout needs the engine view of each prompt (non_tensor_batch "
                           "'raw_prompt_ids', which RLDataset adds); use rollout.name=hf for batches without it")
        ids = prompts.non_tensor_batch["raw_prompt_ids"]
        media = prompts.non_tensor_batch.get("multi_modal_data")
        inputs = []
        for i in range(len(ids)):
            item = {"prompt_token_ids": [int(t) for t in ids[i]]}
            images = (media[i] or {}).get("image") if media is not None else None
            if images:
                item["multi_modal_data"] = {"image": list(images)}
            inputs.append(item)
        return inputs


@contextmanager
def _local_rank_zero(on_cuda: bool):
    """On CUDA, Ray shows each worker only its own GPU, as cuda:0; vLLM's external launcher would pick
    cuda:LOCAL_RANK. Present LOCAL_RANK=0 while the engine is built."""
    if not (on_cuda and torch.cuda.device_count() == 1):
        yield
        return
    saved = os.environ.get("LOCAL_RANK")
    os.environ["LOCAL_RANK"] = "0"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("LOCAL_RANK", None)
        else:
            os.environ["LOCAL_RANK"] = saved
