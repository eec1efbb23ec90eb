"""verlvl: reinforcement-learning training for vision-language models on Ray and FSDP2."""

__version__ = "0.1.0"
