"""veRL's keys: every override line reaches verlvl's check, which makes it work or refuses it by name."""

import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from tests.trainer.helpers import compose_config, config_problems
from verlvl.config.known_keys import default_tree
from verlvl.config.verl_keys import VERL_KEYS


problems = config_problems


def test_the_lines_hydra_refused_reach_verlvls_check():
    """The lines of veRL's Qwen2.5-VL script that Hydra answered with "Could not override ... use +"."""
    assert problems("actor_rollout_ref.model.use_remove_padding=True",
                    "actor_rollout_ref.ref.fsdp_config.param_offload=True", "trainer.balance_batch=True",
                    "reward_model.enable=False", "algorithm.filter_groups.enable=True") == ""
    message = problems("actor_rollout_ref.actor.fsdp_config.ulysses_sequence_parallel_size=2")
    assert ("actor_rollout_ref.actor.fsdp_config.ulysses_sequence_parallel_size=2: sequence parallelism (Ulysses) "
            "is not supported; remove it or set 1") in message


@pytest.mark.parametrize("override, message", [
    ("+trainer.totally_bogus=1", "unknown key trainer.totally_bogus; did you mean trainer.total_epochs?"),
    ("trainer.totally_bogus=1", "unknown key trainer.totally_bogus; did you mean trainer.total_epochs?"),
    ("data.max_prompt_len=10", "unknown key data.max_prompt_len; did you mean data.max_prompt_length?"),
    ("actor_rollout_ref.model.pth=x", "unknown key actor_rollout_ref.model.pth; did you mean actor_rollout_ref.model.path?"),
    ("actor_rollout_ref.actor.optim.lrr=1", "unknown key actor_rollout_ref.actor.optim.lrr; did you mean "
                                            "actor_rollout_ref.actor.optim.lr?"),
    ("actor_rollout_ref.rollout.temprature=1", "did you mean actor_rollout_ref.rollout.temperature?"),
    ("actor_rollout_ref.ref.fsdp_config.param_offlaod=true", "did you mean actor_rollout_ref.ref.fsdp_config.param_offload?"),
    ("critic.cliprange_valu=1", "did you mean critic.cliprange_value?"),
    ("reward_model.reward_manger=naive", "did you mean reward_model.reward_manager?"),
    ("algorithm.kl_ctrl.kl_coeff=1", "did you mean algorithm.kl_ctrl.kl_coef?"),
    ("algorithm.filter_groups.enabled=true", "did you mean algorithm.filter_groups.enable?"),
    ("custom_reward_function.nmae=f", "did you mean custom_reward_function.name?"),
    ("ray_kwargs.ray_init.num_cpu=2", "did you mean ray_kwargs.ray_init.num_cpus?"),
    ("+bogus_section.x=1", "unknown key bogus_section"),
    ("+trainer.bogus=1", "unknown key trainer.bogus; the keys of trainer are listed in "),  # nothing close: where
    ("+bogus=1", "unknown key bogus; known keys here: actor_rollout_ref, algorithm, critic,"),
])
def test_every_section_refuses_an_unknown_key_with_the_closest_one(override, message):
    assert message in problems(override)


@pytest.mark.parametrize("override", [
    "actor_rollout_ref.actor.use_torch_compile=False", "actor_rollout_ref.actor.strategy=fsdp2",
    "actor_rollout_ref.actor.strategy=fsdp", "actor_rollout_ref.actor.ulysses_sequence_parallel_size=1",
    "actor_rollout_ref.ref.fsdp_config.ulysses_sequence_parallel_size=1", "actor_rollout_ref.model.lora_rank=0",
    "actor_rollout_ref.rollout.mode=async", "data.use_shm=False", "trainer.val_only=False",
    "actor_rollout_ref.actor.profiler.enable=False", "ray_kwargs.ray_init.runtime_env.py_executable=null",
    "actor_rollout_ref.rollout.multi_turn.enable=False", "trainer.default_hdfs_dir=null",
    "actor_rollout_ref.model.lora_rank=64", "actor_rollout_ref.model.target_modules=[q_proj,v_proj]",
    "critic.model.lora_rank=8",
])
def test_a_verl_key_at_verls_default_is_accepted(override):
    assert problems(override) == ""


@pytest.mark.parametrize("override, message", [
    ("actor_rollout_ref.model.lora.rank=8", "actor_rollout_ref.model.lora={rank: 8}: is veRL's Megatron LoRA block"),
    ("actor_rollout_ref.actor.strategy=megatron", "actor_rollout_ref.actor.strategy=megatron: verlvl trains with "
                                                  "FSDP2 only"),
    ("actor_rollout_ref.model.use_liger=True", "actor_rollout_ref.model.use_liger=True: Liger kernels"),
    ("actor_rollout_ref.rollout.cudagraph_capture_sizes=[1,2]",
     "actor_rollout_ref.rollout.cudagraph_capture_sizes=[1, 2]: is not supported"),
    ("actor_rollout_ref.actor.profiler.enable=True", "actor_rollout_ref.actor.profiler={enable: True}: veRL's profiler"),
    ("data.custom_cls.path=my.py", "data.custom_cls={path: my.py}: custom dataset classes are not supported"),
    ("reward_model.enable=True", "reward_model.enable=true: reward model workers are not supported"),
    ("actor_rollout_ref.actor.ppo_micro_batch_size=8", "actor_rollout_ref.actor.ppo_micro_batch_size=8: is veRL's "
                                                       "deprecated global micro-batch size"),
    ("actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype=fp8",
     "actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype='fp8': use one of"),
    ("actor_rollout_ref.actor.policy_loss.loss_mode=nope", "actor_rollout_ref.actor.policy_loss.loss_mode='nope'"),
])
def test_a_verl_key_verlvl_does_not_do_is_refused_by_name(override, message):
    assert message in problems(override)


def test_veRLs_shapes_and_verlvls_shorthands_both_read():
    from verlvl.workers.config import ActorConfig, FSDPConfig, from_mapping

    import torch

    actor = from_mapping(ActorConfig, {"policy_loss": "gspo"}, "actor_rollout_ref.actor")
    assert actor.policy_loss.loss_mode == "gspo"
    actor = from_mapping(ActorConfig, {"policy_loss": {"loss_mode": "clip_cov", "clip_cov_ratio": 0.1}},
                         "actor_rollout_ref.actor")
    assert actor.policy_loss.loss_mode == "clip_cov" and actor.policy_loss.clip_cov_ratio == 0.1
    assert FSDPConfig().dtypes() == (torch.bfloat16, torch.float32)
    assert FSDPConfig(mixed_precision=True).dtypes() == (torch.bfloat16, torch.float32)
    assert FSDPConfig(mixed_precision=False).dtypes() is None
    assert FSDPConfig(mixed_precision={"param_dtype": "fp16", "reduce_dtype": "bf16", "buffer_dtype": "fp32"}
                      ).dtypes() == (torch.float16, torch.bfloat16)
    from verlvl.engine.fsdp import fsdp_kwargs

    policy = fsdp_kwargs(True, True, False, torch.float16, torch.bfloat16)["mp_policy"]  # what the worker passes
    assert (policy.param_dtype, policy.reduce_dtype) == (torch.float16, torch.bfloat16)
    assert problems("actor_rollout_ref.actor.policy_loss=gspo", "actor_rollout_ref.actor.fsdp_config.mixed_precision=false",
                    "+actor_rollout_ref.ref.fsdp_config.mixed_precision={param_dtype: bf16, reduce_dtype: fp32}") == ""


def test_each_verl_key_has_one_fate():
    """A key is verlvl's (in the YAML) or in veRL's table, not both; a table entry accepts veRL's default."""
    def yaml_has(path: str) -> bool:
        node = default_tree()
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    assert [k for k in VERL_KEYS if yaml_has(k)] == []
    for key, entry in VERL_KEYS.items():
        assert entry.accepted or entry.accepts_fn, key
        assert entry.accepts(entry.accepted[0] if entry.accepted else None), key


def test_the_command_refuses_an_unknown_key_itself_not_hydra(tmp_path):
    out = subprocess.run([sys.executable, "-m", "verlvl.main_ppo", "trainer.totally_bogus=1",
                          f"trainer.default_local_dir={tmp_path}"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "unknown key trainer.totally_bogus; did you mean trainer.total_epochs?" in out.stderr
    assert "Could not override" not in out.stderr and "Traceback" not in out.stderr


def test_the_demo_preset_applies_to_builtin_models_only():
    demo = OmegaConf.to_container(compose_config(), resolve=True)
    real = OmegaConf.to_container(compose_config("actor_rollout_ref.model.path=Qwen/Qwen2.5-VL-7B-Instruct"),
                                  resolve=True)
    assert demo["preset"] == "tiny_demo" and real["preset"] == "none"
    assert demo["actor_rollout_ref"]["actor"]["optim"]["lr"] == 1e-3 and demo["data"]["max_response_length"] == 2
    # a named model gets veRL's defaults, never the demo's
    assert real["actor_rollout_ref"]["actor"]["optim"]["lr"] == 1e-6
    assert real["actor_rollout_ref"]["actor"]["entropy_coeff"] == 0
    assert real["data"]["max_response_length"] == 512 and real["data"]["train_batch_size"] == 1024
    assert real["trainer"]["total_training_steps"] is None and real["trainer"]["total_epochs"] == 30
    assert real["algorithm"]["adv_estimator"] == "gae" and real["actor_rollout_ref"]["rollout"]["n"] == 1
    # the command line and experiments win over the preset; a preset may be chosen by name
    assert OmegaConf.to_container(compose_config("actor_rollout_ref.actor.optim.lr=5e-4"))[
        "actor_rollout_ref"]["actor"]["optim"]["lr"] == 5e-4
    assert compose_config("+experiment=dapo_shapes").data.max_response_length == 4
    assert compose_config("preset=none").actor_rollout_ref.actor.optim.lr == 1e-6


def test_cfg_job_shows_which_preset_applied():
    bare = subprocess.run([sys.executable, "-m", "verlvl.main_ppo", "--cfg", "job"], capture_output=True, text=True,
                          timeout=120)
    named = subprocess.run([sys.executable, "-m", "verlvl.main_ppo", "actor_rollout_ref.model.path=/models/qwen",
                            "--cfg", "job"], capture_output=True, text=True, timeout=120)
    assert bare.returncode == 0 and named.returncode == 0, bare.stderr[-2000:] + named.stderr[-2000:]
    assert "preset: tiny_demo" in bare.stdout and "lr: 0.001" in bare.stdout
    assert "preset: none" in named.stdout and "lr: 1.0e-06" in named.stdout


def test_ray_sections_are_checked_too():
    assert problems("ray_init.num_cpus=2", "ray_kwargs.ray_init.num_cpus=2") == ""
    assert "unknown key ray_init.num_cpu; did you mean ray_init.num_cpus?" in problems("+ray_init.num_cpu=2")


def test_a_run_never_falls_back_to_a_dataclass_default():
    """Every field of the typed sections is a YAML key (so the composed config carries its default, written in
    conf/), a veRL table key, or set by the trainer: a dataclass default never decides a run."""
    import dataclasses

    from verlvl.data.config import DataConfig
    from verlvl.workers.config import ActorConfig, CriticConfig, ModelConfig, RefConfig, RolloutConfig

    set_by_trainer = {"actor_rollout_ref.rollout.seed"}  # trainer.seed (+ rank)
    critic_model_unread = {"attn_implementation", "custom_chat_template", "override_config", "external_lib"}
    tree, missing = default_tree(), []

    def walk(cls, node, prefix):
        for f in dataclasses.fields(cls):
            path = f"{prefix}.{f.name}"
            if path in VERL_KEYS or path in set_by_trainer or (
                    prefix == "critic.model" and f.name in critic_model_unread):
                continue
            if not isinstance(node, dict) or f.name not in node:
                missing.append(path)
                continue
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if dataclasses.is_dataclass(default) and isinstance(node[f.name], dict):
                walk(type(default), node[f.name], path)

    arr = tree["actor_rollout_ref"]
    for cls, node, prefix in ((DataConfig, tree["data"], "data"), (ModelConfig, arr["model"], "actor_rollout_ref.model"),
                              (ActorConfig, arr["actor"], "actor_rollout_ref.actor"),
                              (RolloutConfig, arr["rollout"], "actor_rollout_ref.rollout"),
                              (RefConfig, arr["ref"], "actor_rollout_ref.ref"), (CriticConfig, tree["critic"], "critic")):
        walk(cls, node, prefix)
    assert missing == []
