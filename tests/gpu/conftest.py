"""The worker tests' data for the GPU tests; where Ray is not installed (the GPU machines here), the worker
classes import through scripts/gpu_check.py's inert Ray stub, as the GPU check drives them."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import gpu_check  # noqa: E402

gpu_check.install_ray_stub_if_missing()

from tests.workers.conftest import mixed_prompts, prompts  # noqa: E402,F401  (pytest fixtures)
