"""The rollout/train switch on a fake vLLM engine: veRL's order around every generation, the sleep level,
no sync without an actor change, and the vllm rollout's use of it; the fake checked against real vLLM."""

import inspect

import numpy as np
import pytest
import torch

from tests.workers import fake_vllm
from tests.workers.fake_vllm import FakeLLM
from verlvl.engine.hybrid import HybridSwitch
from verlvl.protocol import DataProto
from verlvl.workers.config import RolloutConfig

WEIGHTS = ("wake_up", ("weights",))
KV_CACHE = ("wake_up", ("kv_cache",))
SYNC = ("collective_rpc", "reload_weights")


def engine(platform="cuda") -> FakeLLM:
    """On "cuda" asleep (level 2) as VLLMRollout leaves it after building it; its call list empty."""
    fake = FakeLLM("model", enable_sleep_mode=platform == "cuda")
    fake.platform = platform
    if platform == "cuda":
        fake.sleep(level=2)
        fake.calls.clear()
    return fake


def switch_on(llm: FakeLLM, offload=True, asleep=True, **kwargs) -> HybridSwitch:
    """A switch whose callables log into the engine's call list, so one list shows the whole order."""
    def sync():
        llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter([("w", torch.zeros(2))])})

    log = llm.calls.append
    kwargs.setdefault("sleep_mode", True)
    return HybridSwitch(llm, sync, (lambda: log(("offload",))) if offload else None,
                        (lambda: log(("load",))) if offload else None, lambda: log(("empty_cache",)),
                        asleep=asleep and kwargs["sleep_mode"], **kwargs)


def steps(switch: HybridSwitch, llm: FakeLLM, n: int = 3, update: bool = True) -> list[list[tuple]]:
    """n times: generate, then an actor update. Returns each step's calls."""
    per_step = []
    for _ in range(n):
        start = len(llm.calls)
        with switch.generating():
            llm.generate([{"prompt_token_ids": [1, 2]}], fake_vllm.SamplingParams(max_tokens=2))
        if update:
            switch.mark_actor_updated()
        per_step.append(llm.calls[start:])
    return per_step


@pytest.mark.parametrize("lora, level", [(False, 2), (True, 1)])
def test_three_steps_in_verls_order(lora, level):
    llm = engine()
    switch = switch_on(llm, lora=lora)
    expected = [WEIGHTS, SYNC, ("offload",), ("empty_cache",), KV_CACHE, ("generate", 1),
                ("sleep", level), ("load",), ("empty_cache",)]
    for calls in steps(switch, llm):
        assert calls == expected
    assert llm.sleeping_tags == {"weights", "kv_cache"} and switch.asleep


def test_the_order_spelled_out():
    llm = engine()
    calls = steps(switch_on(llm), llm, n=1)[0]
    at = calls.index
    assert at(WEIGHTS) < at(SYNC) < at(KV_CACHE)  # sync into woken weights, before the KV cache takes memory
    assert at(("offload",)) < at(KV_CACHE)
    assert at(("offload",)) < at(("empty_cache",)) < at(KV_CACHE)
    assert at(("sleep", 2)) < at(("load",)) < len(calls) - 1 and calls[-1] == ("empty_cache",)


def test_no_sync_while_the_actor_is_unchanged():
    for llm, switch in [(engine(), None), (engine("cpu"), None)]:
        switch = switch_on(llm, lora=True) if llm.platform == "cuda" else switch_on(llm, sleep_mode=False)
        steps(switch, llm, n=3, update=False)
        assert llm.calls.count(SYNC) == 1
        switch.mark_actor_updated()
        steps(switch, llm, n=1)
        assert llm.calls.count(SYNC) == 2


def test_a_level_2_sleep_forces_a_sync_and_the_fake_catches_a_missing_one():
    llm = engine()
    switch = switch_on(llm)
    steps(switch, llm, n=2, update=False)  # no actor change, but level 2 freed the weights
    assert llm.calls.count(SYNC) == 2
    llm.wake_up(tags=["weights"])
    llm.wake_up(tags=["kv_cache"])
    with pytest.raises(RuntimeError, match="level-2 sleep freed the weights"):
        llm.generate([{"prompt_token_ids": [1]}])


def test_the_engine_sleeps_and_the_actor_returns_when_generation_raises():
    llm = engine()
    switch = switch_on(llm)
    with pytest.raises(ValueError, match="boom"):
        with switch.generating():
            raise ValueError("boom")
    assert llm.calls[-3:] == [("sleep", 2), ("load",), ("empty_cache",)]
    assert not switch.actor_offloaded and switch.asleep
    assert steps(switch, llm, n=1)[0][0] == WEIGHTS  # and the next step starts over cleanly


def test_a_failed_sync_still_puts_the_engine_to_sleep():
    llm = engine()

    def broken_sync():
        raise OSError("gather failed")

    switch = HybridSwitch(llm, broken_sync, empty_cache=lambda: None, sleep_mode=True, asleep=True)
    with pytest.raises(OSError):
        with switch.generating():
            pass
    assert llm.calls == [WEIGHTS, ("sleep", 2)]
    assert switch.weights_stale  # the next rollout_mode tries again


def test_without_sleep_mode_nothing_sleeps_but_syncs_still_happen():
    llm = engine("cpu")
    switch = switch_on(llm, sleep_mode=False)
    per_step = steps(switch, llm)
    assert not any(call[0] in ("sleep", "wake_up") for call in llm.calls)
    assert all(calls[0] == SYNC for calls in per_step) and llm.calls.count(SYNC) == 3
    assert not switch.asleep


def test_asleep_follows_wake_ups_answer():
    llm = engine()
    switch = switch_on(llm)
    switch._wake(["weights"])
    assert switch.asleep and switch.sleeping_tags == {"kv_cache"}  # a partial wake answers False
    llm.wake_up = lambda tags=None: False  # an engine that stays partly asleep: generate would never run
    with pytest.raises(RuntimeError, match="not fully awake"):
        switch.rollout_mode()


def test_the_fake_refuses_what_would_hang_or_corrupt_a_gpu_engine():
    llm = FakeLLM("model", enable_sleep_mode=True)
    llm.sleep(level=1)
    llm.sleep(level=2)  # ignored while the weights sleep, as vLLM's executor does
    assert llm.wake_up(tags=["weights"]) is False
    with pytest.raises(RuntimeError, match="kv_cache"):
        llm.generate([{"prompt_token_ids": [1]}])
    assert llm.wake_up(tags=["kv_cache"]) is True
    assert len(llm.generate([{"prompt_token_ids": [1]}])[0].outputs[0].token_ids) == 16  # level 1 kept them
    llm.sleep(level=2)
    with pytest.raises(RuntimeError, match="unmapped"):
        llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter([])})


# ---------------------------------------------------------------------- the vllm rollout on the fake


class Tokenizer:
    eos_token_id, pad_token_id = 2, 0

    def get_vocab(self):
        return {"<|endoftext|>": 0, "<|im_end|>": 2, "<|image_pad|>": 5}


def prompts() -> DataProto:
    ids = torch.tensor([[0, 7, 8, 9], [3, 4, 5, 6]])
    raw = np.empty(2, dtype=object)
    raw[:] = [[7, 8, 9], [3, 4, 5, 6]]
    return DataProto.from_dict({"input_ids": ids, "attention_mask": (ids > 0).long(),
                                "position_ids": torch.arange(4).expand(2, 4)}, {"raw_prompt_ids": raw})


def vllm_rollout(monkeypatch, tmp_path, on_cuda: bool, **config):
    from verlvl.workers.rollout import vllm_rollout as module

    fake_vllm.install(monkeypatch, "cuda" if on_cuda else "cpu")
    monkeypatch.setattr(module, "is_cuda_available", lambda: on_cuda)
    if on_cuda:  # the sync gathers onto the GPU: here the weights stay where they are
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(module, "full_weights", lambda model, *args: iter(model.state_dict().items()))
    config = RolloutConfig(name="vllm", n=2, response_length=3, **config)
    rollout = module.VLLMRollout(str(tmp_path), Tokenizer(), config, torch.float32)
    return rollout, FakeLLM.instances[-1]


def test_on_cpu_the_rollout_switch_has_no_sleep_mode_and_generates_standalone(monkeypatch, tmp_path):
    rollout, llm = vllm_rollout(monkeypatch, tmp_path, on_cuda=False)
    assert not rollout.sleep_mode and "enable_sleep_mode" not in llm.kwargs
    model = torch.nn.Linear(2, 2)
    rollout.sync_weights(model)  # what the worker does today, without a switch
    out = rollout.generate_sequences(prompts())
    assert out.batch["responses"].shape == (4, 3) and out.batch["rollout_log_probs"].shape == (4, 3)
    switch = rollout.switch(lambda: rollout.sync_weights(model))
    assert switch.sleep_mode is False and not switch.asleep
    with switch.generating():
        rollout.generate_sequences(prompts())
    assert not any(call[0] in ("sleep", "wake_up") for call in llm.calls)
    assert [name for name, _ in llm.loaded] == ["weight", "bias"]


def test_on_cuda_the_rollout_sleeps_at_once_and_generates_only_through_its_switch(monkeypatch, tmp_path):
    rollout, llm = vllm_rollout(monkeypatch, tmp_path, on_cuda=True)
    assert rollout.sleep_mode and llm.kwargs["enable_sleep_mode"] is True
    assert llm.calls == [("sleep", 2)]
    model = torch.nn.Linear(2, 2)
    with pytest.raises(RuntimeError, match="sleeps"):
        rollout.generate_sequences(prompts())
    with pytest.raises(RuntimeError, match="sleeps"):
        rollout.sync_weights(model)
    switch = rollout.switch(lambda: rollout.sync_weights(model),
                            empty_cache=lambda: llm.calls.append(("empty",)))
    with pytest.raises(RuntimeError, match="called before"):
        rollout.switch(lambda: None)
    for _ in range(2):
        start = len(llm.calls)
        with switch.generating():
            first = rollout.generate_sequences(prompts())
        switch.mark_actor_updated()
        assert llm.calls[start:] == [WEIGHTS, SYNC, ("reset_prefix_cache",), ("reset_encoder_cache",),
                                     ("empty",), KV_CACHE, ("generate", 2), ("sleep", 2), ("empty",)]
    assert first.batch["responses"].shape == (4, 3)
    with pytest.raises(RuntimeError, match="sleeps"):
        rollout.generate_sequences(prompts())  # asleep again after the switch


def test_free_cache_engine_off_means_no_sleep_mode_on_cuda(monkeypatch, tmp_path):
    rollout, llm = vllm_rollout(monkeypatch, tmp_path, on_cuda=True, free_cache_engine=False)
    assert not rollout.sleep_mode and llm.calls == [] and not llm.kwargs["enable_sleep_mode"]


# ---------------------------------------------------------------------- the fake against the installed vLLM


def _params(fn) -> list[tuple]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.vllm
def test_the_fake_has_vllms_signatures():
    vllm = pytest.importorskip("vllm", reason="needs vLLM (the vllm stage of `make test`)")
    from vllm.logprobs import Logprob
    from vllm.outputs import CompletionOutput
    from vllm.v1.engine.llm_engine import LLMEngine

    from verlvl.workers.rollout.vllm_rollout import engine_kwargs

    for name in ("sleep", "wake_up", "collective_rpc", "reset_prefix_cache", "generate"):
        assert _params(getattr(FakeLLM, name)) == _params(getattr(vllm.LLM, name)), name
    assert "bool" in str(inspect.signature(vllm.LLM.wake_up).return_annotation)  # "fully awake"
    assert _params(FakeLLM.__init__)[:2] == _params(vllm.LLM.__init__)[:2]  # self, model
    assert _params(fake_vllm.FakeLLMEngine.reset_encoder_cache) == _params(LLMEngine.reset_encoder_cache)
    real_sampling = {p.name: p.default for p in inspect.signature(vllm.SamplingParams).parameters.values()}
    for name, _, default in _params(fake_vllm.SamplingParams)[1:]:
        assert real_sampling[name] == default, name
    fields = set(inspect.signature(CompletionOutput).parameters)
    assert {"token_ids", "logprobs"} <= fields and _params(fake_vllm.Logprob) == _params(Logprob)
    # every keyword the rollout passes to LLM(...) is one vLLM knows (LLM's own or an EngineArgs field)
    from vllm.engine.arg_utils import EngineArgs

    known = {*inspect.signature(vllm.LLM.__init__).parameters, *inspect.signature(EngineArgs).parameters}
    for on_cuda in (False, True):
        config = RolloutConfig(name="vllm", limit_images=2)
        kwargs = engine_kwargs(config, "m", torch.float32, on_cuda, world_size=2)
        assert set(kwargs) <= known, set(kwargs) - known
