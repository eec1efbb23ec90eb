"""The composed config: experiments print, bad keys and values are named, the user's config is untouched."""

import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from tests.trainer.helpers import compose_config
from verlvl.trainer.config import ConfigError, check_config


def test_cfg_job_prints_the_whole_gpu_config():
    out = subprocess.run([sys.executable, "-m", "verlvl.main_ppo", "+experiment=qwen25vl_7b_geo", "--cfg", "job"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    for expected in ("path: Qwen/Qwen2.5-VL-7B-Instruct", "name: vllm", "'n': 5", "n_gpus_per_node: 8",
                     "train_files: ~/data/geo3k/train.parquet", "use_kl_loss: true", "adv_estimator: grpo",
                     "custom_reward_function:", "ray_init:"):
        assert expected in out.stdout, expected


def test_default_config_is_the_cpu_run():
    cfg = OmegaConf.to_container(compose_config(), resolve=True)
    derived = check_config(cfg, resolve_builtins=False)
    assert derived.model_path == "builtin://tiny-qwen2.5-vl" and derived.world_size == 2
    assert derived.on_policy and not derived.use_critic and not derived.use_reference
    assert cfg["actor_rollout_ref"]["rollout"]["response_length"] == cfg["data"]["max_response_length"]


@pytest.mark.parametrize("overrides,message", [
    (["data.train_batch_size=6"],
     "data.train_batch_size=6 is not a multiple of actor_rollout_ref.actor.ppo_mini_batch"),
    (["trainer.n_gpus_per_node=3"], "do not divide over 3 worker slots"),
    (["algorithm.adv_estimator=ppo2"], "algorithm.adv_estimator='ppo2': use one of"),
    (["actor_rollout_ref.rollout.name=sglang"], "actor_rollout_ref.rollout.name='sglang'"),
    (["data.train_files=/nope/train.parquet"], "data.train_files: /nope/train.parquet does not exist"),
    (["trainer.device=cuda"], "trainer.device=cuda but this machine has no CUDA GPU"),
    (["+actor_rollout_ref.actor.lr=1"], "unknown key actor_rollout_ref.actor.lr"),
    (["reward_model.reward_manager=prime"], "reward_model.reward_manager='prime'"),
    (["custom_reward_function.path=/nope/reward.py"], "custom_reward_function.path=/nope/reward.py: no such file"),
])
def test_bad_config_names_the_key(overrides, message):
    cfg = OmegaConf.to_container(compose_config(*overrides), resolve=True)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        check_config(cfg, resolve_builtins=False)


def test_check_config_does_not_mutate_the_users_config():
    cfg = OmegaConf.to_container(compose_config(), resolve=True)
    before = OmegaConf.to_yaml(OmegaConf.create(cfg))
    check_config(cfg, resolve_builtins=False)
    assert OmegaConf.to_yaml(OmegaConf.create(cfg)) == before


def test_vllm_rollout_is_checked_before_anything_starts(monkeypatch):
    """Without vLLM the check says what to install; with an unsupported version it names it."""
    import verlvl.trainer.config as config_module

    def unsupported():
        raise RuntimeError("vLLM 0.30.0 is installed; the vllm rollout supports vLLM <0.34,>=0.32")

    cfg = OmegaConf.to_container(compose_config("actor_rollout_ref.rollout.name=vllm"), resolve=True)
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"rollout.name=vllm needs vLLM: .*pip install 'verlvl\[vllm\]'"):
            check_config(cfg, resolve_builtins=False)
    monkeypatch.setattr(config_module, "check_vllm_version", unsupported)
    with pytest.raises(ConfigError, match="vLLM 0.30.0 is installed"):
        check_config(cfg, resolve_builtins=False)


def test_the_command_answers_a_bad_config_with_the_problems_and_exit_code_2(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "verlvl.main_ppo", "actor_rollout_ref.rollout.name=sglang",
                          f"trainer.default_local_dir={tmp_path}"], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "VERLVL_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 2, out.stderr[-2000:]
    assert "actor_rollout_ref.rollout.name='sglang'" in out.stderr
    assert "Traceback" not in out.stderr and "HYDRA_FULL_ERROR" not in out.stderr


@pytest.mark.parametrize("override, message", [
    ("data.max_response_length=0", "data.max_response_length=0 must be at least 1"),
    ("actor_rollout_ref.actor.optim.lr=-1e-6", "actor_rollout_ref.actor.optim.lr=-1e-06 must be >= 0"),
    ("actor_rollout_ref.actor.ppo_epochs=0", "actor_rollout_ref.actor.ppo_epochs=0 must be at least 1"),
    ("trainer.test_freq=0", "trainer.test_freq=0 must be a positive number of steps, or -1 for never"),
    ("actor_rollout_ref.rollout.top_p=1.5", "actor_rollout_ref.rollout.top_p=1.5 must be in (0, 1]"),
    ("actor_rollout_ref.actor.clip_ratio_c=0.5", "clip_ratio_c=0.5 must be > 1"),
])
def test_numbers_outside_their_range_are_refused_by_key(override, message):
    from tests.trainer.helpers import compose_config
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(compose_config(override), resolve=True)
    with pytest.raises(ConfigError) as info:
        check_config(cfg, resolve_builtins=False)
    assert message in str(info.value)


def test_rows_without_ground_truth_are_refused_unless_the_reward_needs_none(tmp_path, monkeypatch):
    """A dataset without reward_model used to train to the end, every score from a missing ground truth."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.trainer.helpers import compose_config
    from verlvl.data.images import DataError
    from verlvl.main_ppo import run_ppo

    monkeypatch.setenv("VERLVL_CACHE", str(tmp_path / "cache"))
    rows = [{"data_source": "x", "prompt": [{"role": "user", "content": f"Say {i}"}]} for i in range(8)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "no_truth.parquet")
    base = (f"data.train_files={tmp_path / 'no_truth.parquet'}", "data.val_files=null",
            f"trainer.default_local_dir={tmp_path / 'run'}")
    with pytest.raises(DataError, match=r"8 training rows have no reward_model.ground_truth \(e.g. .*no_truth.parquet "
                                        r"row 0.*built-in scorer"):
        run_ppo(compose_config(*base))
    reward = tmp_path / "length.py"
    reward.write_text("def compute_score(data_source, solution_str, ground_truth=None, extra_info=None):\n"
                      "    return float(len(solution_str))\n")
    from verlvl.reward.function import spec_from_config
    from verlvl.trainer.task_runner import _check_ground_truth

    class NoTruth:
        def rows_without_ground_truth(self):
            return ["f row 0"]

    _check_ground_truth(NoTruth(), spec_from_config({"path": str(reward)}))  # declares it needs none: fine
