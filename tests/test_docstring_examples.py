"""Every example in plait's docstrings runs, and every example is written so that it can.

The convention: an example in a docstring is a doctest, lines of ``>>> `` (and
``... ``) followed by the output they print, as in the standard library's docs. reST
shows such a block as code (autodoc needs no ``::``), and ``doctest`` runs it.
Examples run in the module's namespace, as ``doctest`` arranges, and must end what they
start (processes, threads, pools, servers): each module's examples run under the leak
check. A function an example defines is in no importable module; a pool or a process
still runs it, by value (cloudpickle), under fork as under spawn.

Three tests keep it so:

- ``test_docstring_examples_run``: ``doctest`` runs the examples of every module of
  plait (a module whose import needs an optional package that is not installed, such
  as ``dask`` for its cluster backend, is skipped, saying which);
- ``test_code_in_docstrings_is_a_doctest``: a piece of a docstring that is Python code
  but not a doctest (an indented block, or a paragraph, that compiles and does
  something: calls, assigns, loops) is an example nobody runs, and fails the test,
  which names it. Diagrams and wire formats do not compile, so they may stay as they are;
- ``test_every_doctest_is_collected``: ``doctest`` finds the examples of a module's
  functions and classes, not those of nested functions: a ``>>>`` it would not run fails.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import inspect
import pkgutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import plait

PLAIT = Path(plait.__file__).resolve().parent
MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(plait.__path__, "plait.")
    if not m.name.endswith("__main__")
)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def import_or_skip(name: str) -> ModuleType:
    """Import the plait module ``name``; skip if an optional package it needs is missing."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] == "plait":
            raise
        pytest.skip(f"{name} needs {exc.name}, which is not installed")


def doctests(module: ModuleType) -> list[doctest.DocTest]:
    return [t for t in doctest.DocTestFinder().find(module) if t.examples]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str, no_leaks) -> None:
    tests = doctests(import_or_skip(name))
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


# -- the convention ---------------------------------------------------------------------


def docstrings(path: Path) -> Iterator[tuple[str, str]]:
    """(qualified name, cleaned docstring) of the module, classes and functions in ``path``."""

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}.{child.name}"
                doc = ast.get_docstring(child)
                if doc:
                    yield name, doc
                yield from walk(child, name)
            else:
                yield from walk(child, prefix)

    tree = ast.parse(path.read_text(), str(path))
    module = ".".join(path.relative_to(PLAIT.parent).with_suffix("").parts)
    doc = ast.get_docstring(tree)
    if doc:
        yield module, doc
    yield from walk(tree, module)


def pieces(doc: str) -> Iterator[str]:
    """The paragraphs of ``doc``, and the runs of lines indented deeper than the line
    before them (a code block under a sentence), each dedented."""
    lines = doc.splitlines()
    paragraph: list[str] = []
    for line in [*lines, ""]:
        if line.strip():
            paragraph.append(line)
        elif paragraph:
            yield textwrap.dedent("\n".join(paragraph))
            paragraph = []
    block: list[str] = []
    margin = 0  # the indentation of the last line outside a block
    for line in [*lines, "the end"]:
        indent = len(line) - len(line.lstrip())
        if not line.strip() or indent > margin:
            if block or line.strip():
                block.append(line)
            continue
        if block:
            yield textwrap.dedent("\n".join(block)).strip("\n")
            block = []
        margin = indent


def does_something(code: str) -> bool:
    """Whether ``code`` compiles to statements beyond bare names and constants."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    return any(
        not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Name | ast.Constant))
        for s in tree.body
    )


def unconverted_examples() -> list[str]:
    found = []
    for path in sorted(PLAIT.rglob("*.py")):
        for name, doc in docstrings(path):
            for piece in pieces(doc):
                if ">>>" not in piece and does_something(piece):
                    found.append(f"{name}:\n{textwrap.indent(piece, '    ')}")
    return list(dict.fromkeys(found))  # a block can be a paragraph too: name it once


def test_code_in_docstrings_is_a_doctest() -> None:
    found = unconverted_examples()
    assert not found, "code in docstrings that is not a doctest (>>>):\n" + "\n".join(found)


def test_every_doctest_is_collected() -> None:
    collected = set()
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            continue  # an optional package is missing: test_docstring_examples_run says so
        collected.update(inspect.cleandoc(t.docstring or "") for t in doctests(module))
    missed = [
        name
        for path in sorted(PLAIT.rglob("*.py"))
        for name, doc in docstrings(path)
        if ">>>" in doc and doc not in collected
    ]
    assert not missed, f"doctests that doctest does not find (nested functions?): {missed}"
