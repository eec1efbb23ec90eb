"""verlvl.algos is pure tensor maths: it imports torch, numpy and the standard library, never the trainer,
the workers or the engine, so both sides can import it."""

import ast
from pathlib import Path

import verlvl.algos

ALLOWED = {"__future__", "typing", "dataclasses", "collections", "enum", "inspect", "torch", "numpy", "verlvl.algos",
           "verlvl.utils.registry"}


def test_algos_imports_only_torch_numpy_and_itself():
    for path in Path(verlvl.algos.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module]
            else:
                continue
            for name in names:
                allowed = any(name == ok or name.startswith(ok + ".") for ok in ALLOWED)
                assert allowed, f"{path.name} imports {name}"
