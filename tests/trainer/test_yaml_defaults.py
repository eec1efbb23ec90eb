"""One set of defaults: every typed-config field the YAML in conf/ has defaults to the YAML's value, so the two
cannot drift; the trainer's reads of keys a hand-built config lacks give the YAML's value too."""

import dataclasses

import pytest

from verlvl.config.defaults import has_yaml_default, setting, yaml_default
from verlvl.data.config import DataConfig, _as_paths
from verlvl.workers.config import (ActorConfig, CriticConfig, FSDPConfig, ModelConfig, MultiTurnConfig, OptimConfig,
                                   PolicyLossConfig, RefConfig, RolloutConfig)

AR = "actor_rollout_ref"
CONFIGS = [(ActorConfig, f"{AR}.actor"), (ModelConfig, f"{AR}.model"), (RolloutConfig, f"{AR}.rollout"),
           (RefConfig, f"{AR}.ref"), (CriticConfig, "critic"), (DataConfig, "data"),
           (OptimConfig, f"{AR}.actor.optim"), (FSDPConfig, f"{AR}.actor.fsdp_config"),
           (PolicyLossConfig, f"{AR}.actor.policy_loss"), (MultiTurnConfig, f"{AR}.rollout.multi_turn")]
# Fields the YAML has no key for (they keep their Python default). A new field belongs in conf/ unless listed.
NOT_IN_YAML = {"RolloutConfig.seed"}  # the worker sets trainer.seed


def _normal(value, path):
    if path in ("data.train_files", "data.val_files"):
        return _as_paths(value)
    return tuple(value) if isinstance(value, list) else value


def _mismatches(instance, prefix: str, owner: str, out: list[str], missing: set[str] | None) -> None:
    """Fields whose default differs from the YAML's under `prefix` (nested configs too: e.g. critic.optim), and
    (missing) the fields the YAML lacks; a nested config's own class is checked at its own prefix (critic.model
    has only some of ModelConfig's keys: the rest are actor_rollout_ref.model's)."""
    for f in dataclasses.fields(instance):
        path, value = f"{prefix}.{f.name}", getattr(instance, f.name)
        if not has_yaml_default(path):
            if missing is not None:
                missing.add(f"{owner}.{f.name}")
            continue
        if dataclasses.is_dataclass(value):
            _mismatches(value, path, f"{owner}.{f.name}", out, None)
            continue
        want, got = _normal(yaml_default(path), path), _normal(value, path)
        if got != want or type(got) is not type(want) and not isinstance(got, (int, float)):
            out.append(f"{owner}.{f.name} = {value!r}, the YAML's {path} = {yaml_default(path)!r}")


@pytest.mark.parametrize("cls, prefix", CONFIGS, ids=[c.__name__ for c, _ in CONFIGS])
def test_every_field_the_yaml_has_defaults_to_the_yamls_value(cls, prefix):
    wrong, missing = [], set()
    _mismatches(cls(), prefix, cls.__name__, wrong, missing)
    assert wrong == []
    assert missing <= NOT_IN_YAML, f"fields conf/ has no key for: {sorted(missing - NOT_IN_YAML)}"


def test_interpolated_yaml_defaults_resolve_against_the_other_defaults():
    assert RolloutConfig().response_length == yaml_default("data.max_response_length") == 512
    assert RolloutConfig().prompt_length == yaml_default("data.max_prompt_length")
    assert CriticConfig().ppo_mini_batch_size == ActorConfig().ppo_mini_batch_size == 256
    assert CriticConfig().model.path == ModelConfig().path == yaml_default(f"{AR}.model.path")
    assert CriticConfig().optim.lr == 1e-5 and ActorConfig().optim.lr == 1e-6  # each from its own YAML mapping


def test_mutable_defaults_are_fresh_copies():
    a, b = ModelConfig(), ModelConfig()
    a.override_config["x"] = 1
    assert b.override_config == {} and yaml_default(f"{AR}.model.override_config") == {}
    assert isinstance(OptimConfig().betas, tuple)


def test_setting_reads_the_key_and_falls_back_to_the_yaml():
    assert setting({"total_epochs": 3}, "trainer.total_epochs") == 3
    assert setting({"total_epochs": None}, "trainer.total_epochs") is None  # a value given is the value
    assert setting({}, "trainer.total_epochs") == 30
    assert setting(None, "algorithm.adv_estimator") == "gae"
    assert setting({}, "trainer.logger") == ["console", "jsonl"]
    with pytest.raises(KeyError, match="trainer.no_such_key"):
        setting({}, "trainer.no_such_key")
