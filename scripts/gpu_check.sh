#!/usr/bin/env bash
# The GPU check, for a machine with one CUDA GPU and no registry (see README, "GPU check").
#   bash scripts/gpu_check.sh prepare   here, with network: the wheels the GPU machine lacks -> .gpu_wheels/
#   bash scripts/gpu_check.sh [args]    there: install them aside, run the gpu tests, then scripts/gpu_check.py
# The GPU machines here have torch, transformers, pyarrow and pytest but no tensordict (which DataProto needs);
# Ray is not needed (gpu_check.py drives the worker class in-process).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=.gpu_wheels

if [ "${1:-}" = "prepare" ]; then
  mkdir -p "$WHEELS"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_28_x86_64 --platform any -d "$WHEELS" \
    tensordict==0.15.3 cloudpickle pyvers pytest-timeout
  ls -la "$WHEELS"
  exit 0
fi

site=$(mktemp -d)
python -m pip install -q --no-index --no-deps --find-links "$WHEELS" --target "$site" \
  tensordict cloudpickle pyvers pytest-timeout
export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
python -m pytest -q -p no:cacheprovider -m gpu tests/gpu -o addopts="" || echo "[gpu_check] gpu tests failed"
python scripts/gpu_check.py "$@"
