"""Every shipped experiment composes and uses only real keys (an experiment with a stale or misspelt key would
otherwise be found by the first user who runs it)."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.trainer.helpers import compose_config
from verlvl.config.known_keys import CONF_DIR, key_problems

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def test_the_experiments_are_found():
    assert {"qwen25vl_7b_geo", "digits_cpu", "lmm_r1_fre_text"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_an_experiment_uses_only_real_keys(name):
    cfg = OmegaConf.to_container(compose_config(f"+experiment={name}"), resolve=False)
    assert key_problems(cfg) == []
    assert Path(CONF_DIR / "experiment" / f"{name}.yaml").read_text().startswith("# @package _global_")
