"""Every recipe (dmmrl, r1_vlm, LMM-R1) composes with its source's settings and trains a step on CPU on its data."""

from __future__ import annotations

import asyncio
import threading
from contextlib import contextmanager

import pytest
from omegaconf import OmegaConf

from tests.trainer import recipe_fixtures
from tests.trainer.helpers import compose_config

RECIPES = ("dmmrl_gsm8k", "dmmrl_scienceqa", "r1_vlm_digits", "lmm_r1_fre_text", "lmm_r1_mgt_geo",
           "lmm_r1_mgt_geo_ppo")


def composed(name: str, *overrides: str) -> dict:
    return OmegaConf.to_container(compose_config(f"+experiment={name}", *overrides), resolve=True)


def test_recipes_compose_with_their_sources_settings():
    c = {name: composed(name) for name in RECIPES}
    for name, cfg in c.items():
        assert cfg["preset"] == "none", name  # a named model: no demo values leak in
    gsm, sqa = c["dmmrl_gsm8k"], c["dmmrl_scienceqa"]
    assert gsm["actor_rollout_ref"]["model"]["path"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert sqa["actor_rollout_ref"]["model"]["path"] == "Qwen/Qwen2.5-VL-3B-Instruct"
    for cfg in (gsm, sqa):
        arr = cfg["actor_rollout_ref"]
        assert cfg["algorithm"]["adv_estimator"] == "grpo" and arr["rollout"]["temperature"] == 0.9
        assert (arr["actor"]["kl_loss_coef"], arr["actor"]["optim"]["lr"], arr["model"]["lora_rank"]) == (0.04, 2e-5, 16)
    assert sqa["data"]["max_pixels"] == 12845056 and gsm["data"]["train_files"].endswith("gsm8k/train.parquet")
    digits = c["r1_vlm_digits"]
    assert digits["algorithm"]["adv_estimator"] == "grpo" and digits["trainer"]["n_gpus_per_node"] == 4
    assert digits["data"]["train_files"].endswith("digits/train.parquet")
    fre, geo, ppo = c["lmm_r1_fre_text"], c["lmm_r1_mgt_geo"], c["lmm_r1_mgt_geo_ppo"]
    assert fre["algorithm"]["adv_estimator"] == geo["algorithm"]["adv_estimator"] == "reinforce_plus_plus_baseline"
    assert fre["algorithm"]["use_kl_in_reward"] and fre["algorithm"]["kl_ctrl"]["kl_coef"] == 0.001
    assert (fre["actor_rollout_ref"]["rollout"]["n"], fre["data"]["train_batch_size"]) == (16, 256)
    assert fre["actor_rollout_ref"]["actor"]["optim"]["lr"] == 4e-7 and geo["actor_rollout_ref"]["actor"]["optim"]["lr"] == 1e-6
    assert fre["custom_reward_function"]["path"] == "builtin://remote"
    assert fre["custom_reward_function"]["reward_kwargs"]["url"] == "http://127.0.0.1:5000/get_reward"
    # stage 2 starts from stage 1's last HF export, found by path: nothing to edit between the two commands
    export = f"{fre['trainer']['default_local_dir']}/global_step_{fre['trainer']['total_training_steps']}"
    assert geo["actor_rollout_ref"]["model"]["path"] == f"{export}/actor/huggingface"
    assert fre["trainer"]["save_final"] and geo["data"]["train_files"].endswith("vermulti_geo/train.parquet")
    assert ppo["algorithm"]["adv_estimator"] == "gae" and ppo["critic"]["enable"]
    assert ppo["critic"]["model"]["path"] == geo["actor_rollout_ref"]["model"]["path"]
    assert len({cfg["trainer"]["default_local_dir"] for cfg in c.values()}) == len(RECIPES)


def test_builtin_remote_reward_needs_its_url_and_stage_2_its_export():
    from tests.trainer.helpers import config_problems

    problems = config_problems("+experiment=lmm_r1_fre_text", "custom_reward_function.reward_kwargs.url=null")
    assert "custom_reward_function.reward_kwargs.url" in problems
    assert "no built-in reward 'judge'" in config_problems("custom_reward_function.path=builtin://judge")
    # stage 2 run before stage 1 (or from another directory): said so, before anything starts
    assert "train the run that writes it first" in config_problems("+experiment=lmm_r1_mgt_geo")


# ---------------------------------------------------------------------------------------------- CPU runs
@contextmanager
def reward_server():
    """python -m verlvl.reward.serve on a free loopback port, in a thread of this process."""
    from aiohttp import web

    from verlvl.reward.serve import make_app

    requests = []

    @web.middleware
    async def count(request, handler):
        requests.append(request.path)
        return await handler(request)

    app = make_app(workers=1)
    app.middlewares.append(count)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/get_reward", requests
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def test_reward_server_scores_by_data_source_through_builtin_remote():
    from verlvl.reward.function import spec_from_config
    from verlvl.reward.scoring import RewardScorer, Sample

    with reward_server() as (url, requests):
        spec = spec_from_config({"path": "builtin://remote", "reward_kwargs": {"url": url, "retries": 0}})
        outcomes = RewardScorer(spec, max_concurrency=2, timeout_s=30).score([
            Sample("VLM-Reasoner/deepscaler", "<think>2+2</think><answer>$4$</answer>", "$4$"),
            Sample("VLM-Reasoner/deepscaler", "<think>hm</think> <answer>5</answer>", "$4$"),
            Sample("openai/gsm8k", "so #### 12", "12"),
            Sample("no/such_source", "x", "1")])
    assert [o.score for o in outcomes[:3]] == [1.5, 0.0, 1.0]  # LMM-R1: acc + 0.5 format; gsm8k: acc
    assert outcomes[0].extras == {"acc": 1.0, "format": 1.0}
    assert outcomes[3].status != "ok"  # the server's 400 names the unknown data_source; the sample scores 0
    assert len(requests) == 4


def cpu(name: str, model, data: dict, run_dir, *extra: str) -> list[str]:
    """The recipe's CPU substitutions: tiny model, fixture data, small sizes, 2 worker slots, hf rollout, 1 step."""
    from verlvl.config.known_keys import default_tree
    from verlvl.trainer.config import VLLM_ONLY

    rollout = composed(name)["actor_rollout_ref"]["rollout"]
    defaults = default_tree()["actor_rollout_ref"]["rollout"]
    vllm_back = [f"actor_rollout_ref.rollout.{k}={defaults[k]}" for k in VLLM_ONLY
                 if k in rollout and rollout[k] != defaults.get(k)]
    val = data.get("test") or data.get("validation")
    return [f"+experiment={name}", f"actor_rollout_ref.model.path={model}", f"data.train_files={data['train']}",
            f"data.val_files={val}", "data.train_batch_size=4", "data.max_prompt_length=512",
            "data.max_response_length=8", "actor_rollout_ref.actor.ppo_mini_batch_size=4",
            "actor_rollout_ref.rollout.n=4", "actor_rollout_ref.model.use_remove_padding=false",
            "actor_rollout_ref.model.enable_gradient_checkpointing=false",
            "critic.model.enable_gradient_checkpointing=false", "actor_rollout_ref.rollout.name=hf", *vllm_back,
            "reward_model.num_workers=1", "trainer.n_gpus_per_node=2", "trainer.total_training_steps=1",
            "trainer.val_before_train=false", "trainer.test_freq=-1", "trainer.save_final=false",
            "trainer.logger=[console,jsonl]", f"trainer.default_local_dir={run_dir}", *extra]


def train_step(overrides: list[str]):
    from verlvl.main_ppo import run_ppo

    result = run_ppo(compose_config(*overrides))
    assert result.metrics["response_length/mean"] > 0
    return result.metrics


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dmmrl_and_r1_vlm_recipes_train_a_step_on_cpu(ray_local, tiny_vl_path, tmp_path, monkeypatch):
    from verlvl.models.tiny import build_tiny_qwen_text

    monkeypatch.setenv("VERLVL_CACHE", str(tmp_path / "cache"))
    text_model = build_tiny_qwen_text(tmp_path / "text_model")
    gsm = train_step(cpu("dmmrl_gsm8k", text_model, recipe_fixtures.gsm8k(tmp_path / "gsm8k"), tmp_path / "r1"))
    assert 0.0 <= gsm["critic/score/mean"] <= 1.0
    sqa = train_step(cpu("dmmrl_scienceqa", tiny_vl_path, recipe_fixtures.scienceqa(tmp_path / "sqa"),
                         tmp_path / "r2"))
    assert 0.0 <= sqa["critic/score/mean"] <= 1.0
    digits = train_step(cpu("r1_vlm_digits", tiny_vl_path, recipe_fixtures.digits(tmp_path / "digits"),
                            tmp_path / "r3"))
    assert 0.0 <= digits["critic/score/mean"] <= 2.0  # correctness + format


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_lmm_r1_two_stages_with_the_remote_reward_on_cpu(ray_local, tiny_vl_path, tmp_path, monkeypatch):
    """FRE-Text (text only, through the VLM) saves its HF export; MGT-Geo, and its PPO variant with a critic,
    start from it."""
    monkeypatch.setenv("VERLVL_CACHE", str(tmp_path / "cache"))
    fre_dir = tmp_path / "checkpoints" / "lmm_r1" / "fre_text"
    with reward_server() as (url, requests):
        judge = f"custom_reward_function.reward_kwargs.url={url}"
        fre = train_step(cpu("lmm_r1_fre_text", tiny_vl_path, recipe_fixtures.deepscaler(tmp_path / "ds"), fre_dir,
                             judge, "trainer.save_final=true"))
        export = fre_dir / "global_step_1" / "actor" / "huggingface"
        assert (export / "config.json").is_file()
        geo_data = recipe_fixtures.vermulti_geo(tmp_path / "geo")
        geo = train_step(cpu("lmm_r1_mgt_geo", export, geo_data, tmp_path / "mgt", judge))
        ppo = train_step(cpu("lmm_r1_mgt_geo_ppo", export, geo_data, tmp_path / "mgt_ppo", judge))
    assert len(requests) == 3 * 4 * 4  # every sample of every run was scored by the server (4 prompts x 4)
    for metrics in (fre, geo, ppo):
        assert 0.0 <= metrics["critic/score/mean"] <= 1.5 and metrics["reward/errors"] == 0
        assert {"reward/acc/mean", "reward/format/mean"} <= set(metrics)  # the server's extras, logged
        assert metrics["actor/reward_kl_penalty_coeff"] == 0.001  # KL in the reward, as OpenRLHF's init_kl_coef
    assert "critic/vf_loss" in ppo and "critic/vf_loss" not in geo and "critic/vf_loss" not in fre
