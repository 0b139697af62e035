"""The import graph of plait, read from the source: no package imports itself in a circle.

For each package under ``plait/`` the nodes are its modules and its subpackages (a
subpackage counts as one node: its inner cycles are its own test), and the edges are the
imports that run: at the top of a module, inside functions (a lazy import that breaks a
cycle at load time still ties the two modules together), but not under
``if TYPE_CHECKING:``. A cycle means the two rooms are one, or one of them holds what
belongs lower down.

In the packages that are kept clean here, a module imports from another module of its
package only the names that module lists in ``__all__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import plait

ROOT = Path(plait.__file__).resolve().parent

# Packages known to have a cycle, each with why it is still there. A strict xfail: the
# day the cycle goes, the test fails until its entry goes too.
KNOWN_CYCLES: dict[str, str] = {}
# Packages whose modules import from each other only names of ``__all__``.
ALL_CHECKED = ("plait.coro", "plait.managers", "plait.process")


def module_names(root: Path) -> dict[str, Path]:
    """Every module under ``root`` (a package directory) by dotted name."""
    names = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def packages(modules: dict[str, Path]) -> list[str]:
    return sorted(name for name, path in modules.items() if path.name == "__init__.py")


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str | None, int]]:
    """``(module, name or None, line)`` for each import of module ``name`` that runs:
    ``from m import x`` gives ``(m, "x")``, or ``(m.x, None)`` when ``x`` is a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, str | None, int]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child.test):
                for other in child.orelse:
                    visit_node(other)
            else:
                visit_node(child)

    def visit_node(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.extend((alias.name, None, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, node.module] if node.module else parts)
            else:
                base = node.module or ""
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    found.append((f"{base}.{alias.name}", None, node.lineno))
                else:
                    found.append((base, alias.name, node.lineno))
        visit(node)

    visit(ast.parse(path.read_text(), str(path)))
    return found


def graph(package: str, modules: dict[str, Path]) -> dict[str, set[str]]:
    """The import graph inside ``package``: node (a module or subpackage) -> nodes."""

    def node(module: str) -> str | None:
        if module == package:
            return "__init__"
        if module.startswith(package + "."):
            return module[len(package) + 1 :].split(".")[0]
        return None

    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        source = node(name)
        if source is None:
            continue
        targets = edges.setdefault(source, set())
        for module, _, _ in imports(name, path, modules):
            target = node(module)
            if target is not None and target != source:
                targets.add(target)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``edges`` as ``[a, b, ..., a]``, or None."""
    done: set[str] = set()
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if target in path:
                return [*path[path.index(target) :], target]
            if target not in done:
                cycle = walk(target)
                if cycle:
                    return cycle
        path.pop()
        done.add(node)
        return None

    for start in sorted(edges):
        if start not in done:
            cycle = walk(start)
            if cycle:
                return cycle
    return None


def declared_all(path: Path) -> set[str] | None:
    """The names of a module's literal ``__all__``, or None without one."""
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                return set(ast.literal_eval(node.value))
    return None


def names_outside_all(package: str, modules: dict[str, Path]) -> list[str]:
    """Imports inside ``package`` of a name its module does not list in ``__all__``."""
    inside = {name: path for name, path in modules.items() if name.startswith(package)}
    wrong = []
    for name, path in sorted(inside.items()):
        for module, imported, line in imports(name, path, modules):
            if imported is None or module not in inside:
                continue
            names = declared_all(inside[module])
            if names is None or imported not in names:
                wrong.append(f"{name}:{line} imports {imported!r} from {module}")
    return wrong


MODULES = module_names(ROOT)


def _params(names):
    for name in names:
        if name in KNOWN_CYCLES:
            yield pytest.param(
                name, marks=pytest.mark.xfail(strict=True, reason=KNOWN_CYCLES[name])
            )
        else:
            yield name


@pytest.mark.parametrize("package", list(_params(packages(MODULES))))
def test_no_import_cycle_inside_a_package(package):
    cycle = find_cycle(graph(package, MODULES))
    assert cycle is None, f"{package} imports in a circle: {' -> '.join(cycle)}"


@pytest.mark.parametrize("package", ALL_CHECKED)
def test_modules_import_only_names_of_all(package):
    assert names_outside_all(package, MODULES) == []


def test_every_package_is_checked():
    """The known exceptions name packages that exist, and the walk finds the packages."""
    found = packages(MODULES)
    assert {"plait", "plait.coro", "plait.managers", "plait.process"} <= set(found)
    assert set(KNOWN_CYCLES) <= set(found)
    assert set(ALL_CHECKED) <= set(found)


def test_the_graph_sees_lazy_imports_and_skips_type_checking(tmp_path):
    """The checks on a package made here: a lazy import closes a cycle, an import under
    ``TYPE_CHECKING`` does not, a name missing from ``__all__`` is reported."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "sockets.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "__all__ = ['Socket']\n"
        "if TYPE_CHECKING:\n"
        "    from pkg.typing_only import Hint\n"
        "class Socket:\n"
        "    def as_stream(self):\n"
        "        from .streams import Stream\n"
        "        return Stream(self)\n"
    )
    (package / "streams.py").write_text(
        "from . import sockets\nfrom .sockets import _private\n__all__ = ['Stream']\n"
    )
    (package / "typing_only.py").write_text("from .sockets import Socket\n__all__ = []\n")
    modules = module_names(package)
    edges = graph("pkg", modules)
    assert find_cycle(edges) == ["sockets", "streams", "sockets"]
    assert "typing_only" not in edges["sockets"]
    assert names_outside_all("pkg", modules) == [
        "pkg.streams:2 imports '_private' from pkg.sockets"
    ]
