"""actor_rollout_ref.model.external_lib: a module written for veRL registers an estimator, a loss and a reward
manager, picked up from the config by the driver and by every worker process."""

import os
import shutil
import textwrap
from pathlib import Path

import pytest

from tests.trainer.helpers import SHORT, compose_config
from verlvl.main_ppo import run_ppo
from verlvl.trainer.config import ConfigError
from verlvl.utils.external_lib import ExternalLibError, import_external_lib

USER_MODULE = Path(__file__).with_name("verl_extension.py")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_veRL_user_module_trains_with_its_estimator_loss_and_reward_manager(ray_local, tmp_path, monkeypatch):
    monkeypatch.setenv("VERLVL_CACHE", str(tmp_path / "cache"))
    module = shutil.copy(USER_MODULE, tmp_path / "my_verl_ext.py")
    result = run_ppo(compose_config(
        *SHORT, "trainer.total_training_steps=1", f"trainer.default_local_dir={tmp_path / 'run'}",
        f"actor_rollout_ref.model.external_lib={module}", "algorithm.adv_estimator=user_grpo",
        "actor_rollout_ref.actor.policy_loss.loss_mode=user_ppo", "reward_model.reward_manager=user_manager"))
    calls = {}
    for marker in tmp_path.glob("called.*"):
        _, what, pid = marker.name.split(".")
        calls.setdefault(what, set()).add(int(pid))
    assert calls["adv"] == calls["reward"] == {os.getpid()}  # the driver's side
    assert calls["loss"] and os.getpid() not in calls["loss"]  # in the worker process(es)
    assert result.metrics["actor/user_loss_called"] == 1.0  # the loss's own metric reached the tracker
    assert "critic/score/mean" in result.metrics and "actor/pg_loss" in result.metrics


def test_a_bad_external_lib_is_a_config_error_naming_key_and_module(tmp_path):
    with pytest.raises(ConfigError, match=r"actor_rollout_ref\.model\.external_lib=no_such_module_xyz: no module "
                                          r"'no_such_module_xyz'"):
        run_ppo(compose_config("actor_rollout_ref.model.external_lib=no_such_module_xyz"))
    broken = tmp_path / "broken_ext.py"
    broken.write_text("raise RuntimeError('half written')\n")
    with pytest.raises(ExternalLibError, match=r"external_lib=.*broken_ext.py: importing module broken_ext.py "
                                               r"raised RuntimeError: half written"):
        import_external_lib(str(broken))
    with pytest.raises(ExternalLibError, match="no such file"):
        import_external_lib(str(tmp_path / "missing.py"))


def test_a_module_name_on_sys_path_is_imported_once(tmp_path, monkeypatch):
    (tmp_path / "once_ext_module.py").write_text(textwrap.dedent("""
        COUNT = globals().get("COUNT", 0) + 1
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    first = import_external_lib("once_ext_module")
    again = import_external_lib(["once_ext_module", None])
    assert first[0] is again[0] and first[0].COUNT == 1
    assert import_external_lib(None) == [] and import_external_lib("") == []
