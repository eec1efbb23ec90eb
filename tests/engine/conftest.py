"""The worker tests' data (tiny model, shapes prompts, a mixed text/image set) for the engine tests."""

from tests.workers.conftest import mixed_prompts, prompts  # noqa: F401  (pytest fixtures)
