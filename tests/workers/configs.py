"""The typed worker configs at the small sizes these tests were written against. The configs' defaults are
conf/'s (a real run's: mini-batch 256, micro-batch 32, gradient checkpointing and packed forwards on); a test
that builds a config or a worker's mapping by hand states its sizes here, once."""

from verlvl.workers.config import CriticConfig, ModelConfig

MODEL = {"enable_gradient_checkpointing": False, "use_remove_padding": False}  # padded forwards, no recompute
ACTOR = {"ppo_mini_batch_size": 8, "ppo_micro_batch_size_per_gpu": 4}
ROLLOUT = {"response_length": 64, "log_prob_micro_batch_size_per_gpu": 8, "max_num_seqs": 1024}
REF = {"log_prob_micro_batch_size_per_gpu": None}  # None: the rollout's
CRITIC = {"ppo_mini_batch_size": 8, "ppo_micro_batch_size_per_gpu": 4, "ppo_max_token_len_per_gpu": 16384}


def small_model(**kwargs) -> ModelConfig:
    return ModelConfig(**{**MODEL, **kwargs})


def small_critic(**kwargs) -> CriticConfig:
    return CriticConfig(**{**CRITIC, "model": small_model(), **kwargs})
