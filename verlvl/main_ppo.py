"""`python -m verlvl.main_ppo [+experiment=NAME] [key=value ...]`: check the config, start or join Ray, train."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def run_ppo(cfg: DictConfig):
    """Train with a composed config. The config is read, never modified: derived values live apart."""
    from verlvl.trainer.config import check_config
    from verlvl.trainer.task_runner import run
    from verlvl.utils.ray_init import init_ray

    container = OmegaConf.to_container(cfg, resolve=True)
    derived = check_config(container)
    ray_cfg = container.get("ray_init") or {}
    # Worker env for processes Ray starts (allocator settings are read at process start).
    init_ray(address=ray_cfg.get("address"), num_cpus=ray_cfg.get("num_cpus"),
             required_cpus=derived.world_size + 1)
    return run(container, derived)


@hydra.main(config_path=CONF_DIR, config_name="ppo_trainer", version_base=None)
def main(cfg: DictConfig) -> None:
    logging.getLogger("verlvl").setLevel(logging.INFO)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run_ppo(cfg)


if __name__ == "__main__":
    main()
