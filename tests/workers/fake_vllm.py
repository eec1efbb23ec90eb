"""A fake vLLM engine with the real `vllm.LLM` signatures verlvl uses (0.32) and its sleep/wake state.

It records every call in order (`calls`, a list a test may share with its own callables) and fails
loudly where the real engine on a GPU would hang or compute garbage: generating while a tag sleeps
(vLLM's scheduler stays paused), generating after a level-2 sleep freed the weights and nothing was
loaded since, loading weights into memory that sleeps. tests/engine/test_hybrid_switch.py checks the
signatures against the installed vLLM.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

SLEEP_TAGS = frozenset({"weights", "kv_cache"})


@dataclass
class Logprob:  # vllm.logprobs.Logprob
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:  # vllm.outputs.CompletionOutput (the fields verlvl reads)
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: list[dict[int, Logprob]] | None
    finish_reason: str | None = None


@dataclass
class RequestOutput:  # vllm.outputs.RequestOutput
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int] | None
    prompt_logprobs: Any
    outputs: list[CompletionOutput]
    finished: bool


class SamplingParams:
    """The keyword arguments (and defaults) of vllm.SamplingParams that verlvl passes."""

    def __init__(self, n: int = 1, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
                 seed: int | None = None, stop_token_ids: list[int] | None = None,
                 max_tokens: int | None = 16,
                 logprobs: int | None = None, detokenize: bool = True,
                 logit_bias: dict[int, float] | None = None, ignore_eos: bool = False):
        self.n, self.temperature, self.top_p, self.top_k, self.seed = n, temperature, top_p, top_k, seed
        self.ignore_eos = ignore_eos
        self.stop_token_ids, self.max_tokens, self.logprobs = stop_token_ids, max_tokens, logprobs
        self.detokenize, self.logit_bias = detokenize, logit_bias


class FakeLLMEngine:
    """`LLM.llm_engine`: only what verlvl calls on it."""

    def __init__(self, llm: FakeLLM):
        self._llm = llm

    def reset_encoder_cache(self) -> None:
        self._llm.calls.append(("reset_encoder_cache",))


class FakeLLM:
    """State as in vllm/v1/executor/abstract.py and the CuMem sleep backend: `sleep` puts both tags to
    sleep (ignored while the weights sleep), level 2 frees the weights, `wake_up(tags)` wakes those tags
    and returns whether nothing sleeps any more."""

    platform = "cuda"  # "cpu": enable_sleep_mode is rejected, sleep and wake_up do nothing
    instances: list[FakeLLM] = []

    def __init__(self, model: str, **kwargs: Any) -> None:
        if kwargs.get("enable_sleep_mode") and self.platform == "cpu":
            raise ValueError("Sleep mode is not supported on current platform.")
        self.model, self.kwargs = model, kwargs
        self.calls: list[tuple] = []
        self.sleeping_tags: set[str] = set()
        self.weights_freed = False  # a level-2 sleep freed them; only a weight load makes them valid again
        self.weights_version = 0  # bumped by every weight load: outputs depend on it
        self.loaded: list[tuple[str, tuple[int, ...]]] = []  # (name, shape) of the last weight load
        self.llm_engine = FakeLLMEngine(self)
        FakeLLM.instances.append(self)

    def sleep(self, level: int = 1, mode: str = "abort"):
        self.calls.append(("sleep", level))
        if self.platform == "cpu":
            return None
        if not self.kwargs.get("enable_sleep_mode"):
            raise RuntimeError("sleep() on an engine built without enable_sleep_mode=True frees nothing")
        if "weights" in self.sleeping_tags:
            return None  # the real executor warns "Executor is already sleeping." and does nothing
        self.sleeping_tags |= SLEEP_TAGS
        if level >= 2:
            self.weights_freed = True
        return None

    def wake_up(self, tags: list[str] | None = None) -> bool:
        self.calls.append(("wake_up", None if tags is None else tuple(tags)))
        if self.platform == "cpu":
            return True
        if tags is None:
            self.sleeping_tags.clear()
        elif all(tag in self.sleeping_tags for tag in tags):  # else the real one warns and wakes nothing
            self.sleeping_tags -= set(tags)
        return not self.sleeping_tags

    def collective_rpc(self, method: str | Callable[..., Any], timeout: float | None = None,
                       args: tuple = (), kwargs: dict[str, Any] | None = None) -> list[Any]:
        self.calls.append(("collective_rpc", method))
        if method == "reload_weights":
            if "weights" in self.sleeping_tags:
                raise RuntimeError("reload_weights while the weights sleep: it writes into unmapped memory")
            self.loaded = [(name, tuple(t.shape)) for name, t in (kwargs or {})["weights_iterator"]]
            self.weights_freed = False
            self.weights_version += 1
        return [None]

    def reset_prefix_cache(self, reset_running_requests: bool = False, reset_connector: bool = False) -> bool:
        self.calls.append(("reset_prefix_cache",))
        return True

    def generate(self, prompts: Any, sampling_params: Any = None, *,
                 use_tqdm: bool | Callable[..., Any] = True,
                 lora_request: Any = None, priority: int | Sequence[int] | None = None,
                 tokenization_kwargs: dict[str, Any] | None = None,
                 mm_processor_kwargs: dict[str, Any] | None = None) -> list[RequestOutput]:
        prompts = prompts if isinstance(prompts, list) else [prompts]
        self.calls.append(("generate", len(prompts)))
        if self.sleeping_tags:
            raise RuntimeError(f"generate while {sorted(self.sleeping_tags)} sleep: vLLM would wait forever")
        if self.weights_freed:
            raise RuntimeError("generate after a level-2 sleep freed the weights and nothing reloaded them")
        params = sampling_params or SamplingParams()
        n, length = getattr(params, "n", 1), getattr(params, "max_tokens", None) or 16
        banned = {t for t, bias in (getattr(params, "logit_bias", None) or {}).items() if bias <= -100}
        results = []
        for i, prompt in enumerate(prompts):
            ids = list(prompt["prompt_token_ids"]) if isinstance(prompt, dict) else []
            outputs = []
            for k in range(n):
                tokens = [(sum(ids) + 7 * k + 3 * j + self.weights_version) % 50 + 1 for j in range(length)]
                tokens = [t + 50 if t in banned else t for t in tokens]  # logit_bias -100: never sampled
                logprobs = [{t: Logprob(-0.01 * (j + 1))} for j, t in enumerate(tokens)]
                total = sum(lp[t].logprob for lp, t in zip(logprobs, tokens))
                outputs.append(CompletionOutput(k, "", tokens, total, logprobs, "length"))
            results.append(RequestOutput(str(i), None, ids, None, outputs, True))
        return results


def fake_vllm_module(version: str = "0.32.0") -> types.ModuleType:
    """A stand-in `vllm` module (LLM, SamplingParams, __version__) for sys.modules."""
    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams, module.__version__ = FakeLLM, SamplingParams, version
    return module


def install(monkeypatch, platform: str = "cuda") -> type[FakeLLM]:
    """Make `import vllm` give the fake for this test; returns the engine class (its `instances` reset)."""
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm_module())
    monkeypatch.setattr(FakeLLM, "platform", platform)
    monkeypatch.setattr(FakeLLM, "instances", [])
    return FakeLLM
