"""veRL's own VLM example scripts, pasted: each override line either runs (one CPU step for all of them
together) or stops the command before any work with verlvl's message naming the key (exit 2, no traceback).

Lines from verl-project/verl (1dda039, 2026-08): examples/grpo_trainer/run_qwen2_5_vl_7b_fsdp.sh,
run_qwen3_vl_8b_fsdp.sh, run_qwen3_vl_30b_a3b_fsdp.sh and examples/tuning/lora/run_qwen2_5_vl_7b_fsdp.sh, with
the scripts' default values filled in and as the shell passes them (quotes removed)."""

import json
import subprocess
import sys

import pytest

from tests.trainer.helpers import compose_config, config_problems
from verlvl.trainer.config import VLLM_ONLY

GEO3K = [
    "algorithm.adv_estimator=grpo", "algorithm.use_kl_in_reward=False",
    "data.train_files=$HOME/data/geo3k/train.parquet", "data.val_files=$HOME/data/geo3k/test.parquet",
    "data.image_key=images", "data.train_batch_size=512", "data.max_prompt_length=1024",
    "data.max_response_length=2048", "data.filter_overlong_prompts=True", "data.truncation=error",
    "actor_rollout_ref.model.path=Qwen/Qwen2.5-VL-7B-Instruct", "actor_rollout_ref.model.use_remove_padding=True",
    "actor_rollout_ref.model.enable_gradient_checkpointing=True",
    "actor_rollout_ref.actor.optim.lr=1e-6", "actor_rollout_ref.actor.ppo_mini_batch_size=128",
    "actor_rollout_ref.actor.use_dynamic_bsz=True", "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=24576",
    "actor_rollout_ref.actor.use_kl_loss=True", "actor_rollout_ref.actor.kl_loss_coef=0.01",
    "actor_rollout_ref.actor.kl_loss_type=low_var_kl", "actor_rollout_ref.actor.entropy_coeff=0",
    "actor_rollout_ref.actor.fsdp_config.param_offload=False",
    "actor_rollout_ref.actor.fsdp_config.optimizer_offload=False",
    "actor_rollout_ref.rollout.name=vllm", "actor_rollout_ref.rollout.tensor_model_parallel_size=2",
    "actor_rollout_ref.rollout.gpu_memory_utilization=0.6", "actor_rollout_ref.rollout.n=5",
    "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=True",
    "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu=24576",
    "actor_rollout_ref.ref.log_prob_use_dynamic_bsz=True", "actor_rollout_ref.ref.log_prob_max_token_len_per_gpu=24576",
    "actor_rollout_ref.ref.fsdp_config.param_offload=True",
    "trainer.balance_batch=True", 'trainer.logger=["console","wandb"]', "trainer.project_name=verl_grpo_geo3k",
    "trainer.experiment_name=qwen2_5_vl_7b_vllm_fsdp", "trainer.n_gpus_per_node=8", "trainer.nnodes=1",
    "trainer.save_freq=20", "trainer.test_freq=5", "trainer.total_epochs=15",
    # EXTRA (GPU) and the NPU variants
    "actor_rollout_ref.actor.strategy=fsdp2", "actor_rollout_ref.model.use_fused_kernels=True",
    "actor_rollout_ref.rollout.multi_stage_wake_up=True", "actor_rollout_ref.rollout.enable_chunked_prefill=False",
    "actor_rollout_ref.rollout.enforce_eager=False", "actor_rollout_ref.rollout.free_cache_engine=True",
    "+actor_rollout_ref.rollout.engine_kwargs.vllm.mm_processor_cache_gb=0",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4", "actor_rollout_ref.model.use_fused_kernels=False",
    "actor_rollout_ref.rollout.multi_stage_wake_up=False", "actor_rollout_ref.rollout.free_cache_engine=False",
    "actor_rollout_ref.actor.use_torch_compile=False", "actor_rollout_ref.actor.fsdp_config.param_offload=True",
    "actor_rollout_ref.actor.fsdp_config.optimizer_offload=True",
    "actor_rollout_ref.actor.fsdp_config.ulysses_sequence_parallel_size=1",
    "actor_rollout_ref.ref.fsdp_config.ulysses_sequence_parallel_size=1",
    "ray_kwargs.ray_init.runtime_env.py_executable=null",
]
QWEN3_VL_30B = [  # the lines the others lack
    "algorithm.rollout_correction.rollout_is=sequence", "algorithm.rollout_correction.rollout_is_threshold=2.0",
    "algorithm.rollout_correction.rollout_is_batch_normalize=true", "algorithm.rollout_correction.rollout_rs=token_k1",
    "algorithm.rollout_correction.rollout_rs_threshold=0.6_1.6",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=10",
    "actor_rollout_ref.actor.entropy_from_logits_with_chunking=True",
    "actor_rollout_ref.actor.fsdp_config.reshard_after_forward=True",
    "actor_rollout_ref.rollout.max_num_batched_tokens=20000", "actor_rollout_ref.rollout.calculate_log_probs=True",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=2",
    "actor_rollout_ref.ref.fsdp_config.reshard_after_forward=True",
    "actor_rollout_ref.ref.entropy_from_logits_with_chunking=True",
    "trainer.critic_warmup=0", "trainer.resume_mode=auto", "trainer.val_before_train=True",
]
LORA = ["actor_rollout_ref.model.lora_rank=64", "actor_rollout_ref.model.lora_alpha=32",
        "actor_rollout_ref.model.target_modules=all-linear", "actor_rollout_ref.model.exclude_modules=.*visual.*"]

REFUSED = {  # line -> what verlvl says (the key is named in it)
    "actor_rollout_ref.actor.fsdp_config.fsdp_size=8":
        "actor_rollout_ref.actor.fsdp_config.fsdp_size=8: hybrid sharding is not supported",
    "actor_rollout_ref.actor.fsdp_config.entropy_checkpointing=True":
        "actor_rollout_ref.actor.fsdp_config.entropy_checkpointing=True: entropy recomputation is not supported",
    "actor_rollout_ref.actor.fsdp_config.ulysses_sequence_parallel_size=2":
        "actor_rollout_ref.actor.fsdp_config.ulysses_sequence_parallel_size=2: sequence parallelism (Ulysses) is "
        "not supported; remove it or set 1",
    "actor_rollout_ref.actor.fsdp_config.forward_prefetch=True":
        "actor_rollout_ref.actor.fsdp_config.forward_prefetch=True: forward prefetch is not supported",
    "actor_rollout_ref.ref.fsdp_config.forward_prefetch=True":
        "actor_rollout_ref.ref.fsdp_config.forward_prefetch=True: forward prefetch is not supported",
    "actor_rollout_ref.ref.fsdp_config.ulysses_sequence_parallel_size=2":
        "actor_rollout_ref.ref.fsdp_config.ulysses_sequence_parallel_size=2: sequence parallelism",
    "ray_kwargs.ray_init.runtime_env.py_executable=uv -v run --frozen --all-packages --extra vllm --extra fsdp":
        "ray_kwargs.ray_init.runtime_env={py_executable: uv -v run",
}
# CPU-only substitutions: model, data, sizes, GPUs (hf for vLLM, which needs its GPU image), no wandb (network)
CPU = ["actor_rollout_ref.model.path=builtin://tiny-qwen2.5-vl", "data.train_files=builtin://shapes/train.parquet",
       "data.val_files=builtin://shapes/test.parquet", "data.val_max_samples=4", "data.max_prompt_length=128",
       "data.max_response_length=2", "data.train_batch_size=4", "actor_rollout_ref.actor.ppo_mini_batch_size=4",
       "actor_rollout_ref.rollout.n=2", "actor_rollout_ref.rollout.name=hf", "trainer.n_gpus_per_node=2",
       "trainer.logger=[console,jsonl]", "trainer.total_training_steps=1", "trainer.save_final=false"]
ACCEPTED = GEO3K + QWEN3_VL_30B + LORA
# The vLLM engine's own settings go with vLLM: the hf rollout would change nothing for them, so it refuses them.
VLLM_SETTINGS = [line for line in ACCEPTED if line.lstrip("+").split("=")[0].split(".")[1:3] in
                 [["rollout", key] for key in VLLM_ONLY]]
ON_HF = [line for line in ACCEPTED if line not in VLLM_SETTINGS]


check = config_problems


@pytest.mark.parametrize("line", sorted(REFUSED))
def test_a_refused_line_is_named_with_what_to_do(line):
    assert REFUSED[line] in check(*CPU, line)


def test_the_command_stops_before_any_work_on_the_refused_lines(tmp_path):
    out = subprocess.run([sys.executable, "-m", "verlvl.main_ppo", *CPU, *REFUSED,
                          f"trainer.default_local_dir={tmp_path}"], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "VERLVL_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr and "Could not override" not in out.stderr
    for message in REFUSED.values():
        assert message in out.stderr, message
    assert not (tmp_path / "cache").exists()  # nothing built, nothing loaded


def test_the_vllm_engines_settings_are_refused_with_the_hf_rollout():
    assert VLLM_SETTINGS and check(*ON_HF, *CPU) == ""
    message = check(*ACCEPTED, *CPU)
    assert "set the vLLM engine, but rollout.name=hf" in message and "tensor_model_parallel_size" in message


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_every_accepted_line_runs_one_cpu_step(ray_local, tmp_path, monkeypatch):
    from verlvl.main_ppo import run_ppo

    assert check(*ON_HF, *CPU) == ""
    monkeypatch.setenv("VERLVL_CACHE", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    result = run_ppo(compose_config(*ON_HF, *CPU, "trainer.save_final=true", f"trainer.default_local_dir={run_dir}"))
    assert result.metrics["training/global_step"] == 1
    assert result.metrics["actor/kl_loss"] >= 0 and "global_seqlen/balanced_max" in result.metrics  # use_kl_loss, balance
    assert any(k.startswith("rollout_corr/") for k in result.metrics)  # algorithm.rollout_correction
    assert (run_dir / "global_step_1" / "actor" / "huggingface" / "lora_adapter").is_dir()  # the LoRA lines
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("val-core/verlvl/shapes/acc/mean@1" in row for row in rows)  # val_before_train
