"""+experiment=qwen25vl_7b_geo_lora: veRL's Qwen2.5-VL LoRA example as a preset (issue 15)."""

from omegaconf import OmegaConf

from tests.trainer.helpers import compose_config


def test_the_lora_experiment_is_the_geo3k_one_with_verls_lora_settings():
    lora = OmegaConf.to_container(compose_config("+experiment=qwen25vl_7b_geo_lora"), resolve=True)
    full = OmegaConf.to_container(compose_config("+experiment=qwen25vl_7b_geo"), resolve=True)
    model = lora["actor_rollout_ref"]["model"]
    assert (model["lora_rank"], model["lora_alpha"], model["target_modules"]) == (64, 32, "all-linear")
    assert model["exclude_modules"] == ".*visual.*" and model["path"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert lora["actor_rollout_ref"]["actor"]["optim"]["lr"] == 3e-6
    assert lora["data"] == full["data"] and lora["preset"] == "none"  # geo3k as the full-parameter run has it
    assert full["actor_rollout_ref"]["model"]["lora_rank"] == 0
