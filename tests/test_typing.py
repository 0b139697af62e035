"""What type checkers see: ``py.typed``, the stubs of the lazy packages, a typed program.

``mypy --strict`` itself runs in ``make test`` (on ``tests/typed/`` and ``examples/``);
here the typed program runs, and each stub is held to its package: a name the package
exports (``__all__``) but its stub lacks would be invisible to checkers, one the stub
imports from elsewhere than the package would get a wrong type. A stub re-exports with
``import X as X`` and needs no ``__all__`` of its own.
"""

from __future__ import annotations

import ast
import importlib
import os
from pathlib import Path

import pytest

import plait
from tests.support import run_python

PLAIT = Path(plait.__file__).parent
STUBS = sorted(PLAIT.rglob("*.pyi"))


def test_plait_says_it_is_typed():
    assert (PLAIT / "py.typed").is_file()


def test_every_package_with_lazy_names_has_a_stub():
    lazy = {
        path.with_suffix(".pyi")
        for path in PLAIT.rglob("__init__.py")
        if "lazy_names(" in path.read_text()
    }
    assert lazy and lazy <= set(STUBS), f"no stub: {sorted(map(str, lazy - set(STUBS)))}"


@pytest.mark.parametrize("stub", STUBS, ids=lambda p: str(p.relative_to(PLAIT.parent)))
def test_a_stub_exports_what_its_module_exports_from_the_same_homes(stub):
    parts = stub.relative_to(PLAIT.parent).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    module = importlib.import_module(name)
    tree = ast.parse(stub.read_text())
    declared = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module != "typing":
            for alias in node.names:
                declared[alias.asname or alias.name] = (node.module, alias.name)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            declared[node.name] = None
    submodules = getattr(importlib.import_module("plait.process.api"), "SUBMODULES", ())
    for exported, home in declared.items():
        if home is None:
            assert callable(getattr(module, exported)), exported
            continue
        source, original = home
        assert exported in module.__all__ or (
            name == "plait.multiprocessing" and exported in submodules
        ), f"the stub declares {exported}, which {name} does not export"
        if source == name:  # a submodule as attribute
            continue
        value = getattr(importlib.import_module(source), original)
        assert value is getattr(module, exported), f"{exported} comes from elsewhere"
    assert set(module.__all__) <= set(declared), set(module.__all__) - set(declared)


@pytest.mark.timeout(120)
def test_the_typed_program_runs():
    program = Path(__file__).parent / "typed" / "faces_program.py"
    env = {**os.environ, "PYTHONPATH": str(PLAIT.parent)}
    run = run_python(str(program), timeout=100, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["325", "12", "28"]
