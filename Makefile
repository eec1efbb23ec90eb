# The two commands: `make train` (the CPU default run) and `make test` (the test suite). Both set up
# .venv first (scripts/setup_env.sh, a no-op when it is already current).
PY := .venv/bin/python

.PHONY: setup test train bench
setup:
	@bash scripts/setup_env.sh

test: setup
	$(PY) -m pytest

train: setup
	$(PY) -m verlvl.main_ppo

bench: setup
	$(PY) -m pytest tests/bench -s -o addopts=""
