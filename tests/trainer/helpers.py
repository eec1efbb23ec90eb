"""Compose the trainer's config the way `python -m verlvl.main_ppo` does, with overrides."""

from hydra import compose, initialize_config_dir

from verlvl.config.overrides import verl_overrides, with_preset
from verlvl.main_ppo import CONF_DIR

# A short run of the CPU default: 4 prompts x 4 samples, no validation, no final checkpoint.
SHORT = ["data.train_batch_size=4", "actor_rollout_ref.actor.ppo_mini_batch_size=4", "actor_rollout_ref.rollout.n=4",
         "trainer.val_before_train=false", "trainer.test_freq=-1", "trainer.save_final=false",
         "trainer.logger=[jsonl]"]


def compose_config(*overrides: str):
    """As the command composes it: veRL-style `a.b=v` for any key, the demo preset for builtin:// models."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return compose(config_name="ppo_trainer", overrides=with_preset(verl_overrides(overrides), CONF_DIR))


def config_problems(*overrides: str) -> str:
    """check_config's message for the composed config ('' when it passes)."""
    from omegaconf import OmegaConf

    from verlvl.trainer.config import ConfigError, check_config

    cfg = OmegaConf.to_container(compose_config(*overrides), resolve=True)
    try:
        check_config(cfg, resolve_builtins=False)
    except ConfigError as e:
        return str(e)
    return ""
