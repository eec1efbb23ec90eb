"""`python -m verlvl.main_ppo [+experiment=NAME] [key=value ...]`: check the config, start or join Ray, train."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
EXIT_BAD_INPUT = 2  # the config, the data or the reward function is wrong: nothing ran


def run_ppo(cfg: DictConfig):
    """Train with a composed config. The config is read, never modified: derived values live apart."""
    from verlvl.trainer.config import ConfigError, check_config
    from verlvl.trainer.task_runner import run
    from verlvl.utils.external_lib import ExternalLibError, import_external_lib
    from verlvl.utils.ray_init import init_ray

    container = OmegaConf.to_container(cfg, resolve=True)
    try:  # the user's registrations first, so the names they add pass the check
        import_external_lib(((container.get("actor_rollout_ref") or {}).get("model") or {}).get("external_lib"))
    except ExternalLibError as e:
        raise ConfigError(str(e)) from e
    derived = check_config(container)
    ray_cfg = container.get("ray_init") or {}
    verl_ray = ((container.get("ray_kwargs") or {}).get("ray_init") or {})  # veRL's spelling of the same
    # Worker env for processes Ray starts (allocator settings are read at process start).
    init_ray(address=ray_cfg.get("address"), num_cpus=ray_cfg.get("num_cpus") or verl_ray.get("num_cpus"),
             required_cpus=derived.world_size + 1)
    return run(container, derived)


def main() -> None:
    """The command: any `a.b=v` override reaches verlvl's own check (veRL's scripts write no `+`), and
    preset=tiny_demo applies when the model is built-in (`--cfg job` shows `preset:`)."""
    from verlvl.config.overrides import verl_overrides, with_preset

    sys.argv = [sys.argv[0], *with_preset(verl_overrides(sys.argv[1:]), CONF_DIR)]
    _hydra_main()


@hydra.main(config_path=CONF_DIR, config_name="ppo_trainer", version_base=None)
def _hydra_main(cfg: DictConfig) -> None:
    from verlvl.data.images import DataError
    from verlvl.reward.function import RewardFunctionError
    from verlvl.trainer.checkpoint import CheckpointSaveError
    from verlvl.trainer.config import ConfigError
    from verlvl.trainer.dynamic_sampling import NotEnoughGroups
    from verlvl.workers.rollout.token_guard import ImageTokenMismatch

    logging.getLogger("verlvl").setLevel(logging.INFO)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        run_ppo(cfg)
    except (ConfigError, DataError, RewardFunctionError, ImageTokenMismatch) as e:
        # a user's mistake, said as a command-line tool says it: no traceback, no Hydra hint after it
        print(f"verlvl: {e}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except (CheckpointSaveError, NotEnoughGroups) as e:  # the run stopped; its message says what is kept
        print(f"verlvl: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
