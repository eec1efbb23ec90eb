"""Rollout engines: hf (transformers generate), vllm."""
