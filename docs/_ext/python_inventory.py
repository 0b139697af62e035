"""intersphinx to the Python docs without a network: the inventory is made locally.

Sphinx fetches ``https://docs.python.org/3/objects.inv`` at every build, and a build
that cannot (this project builds where only PyPI is reachable) gets a warning, which
fails a ``-W`` build. So the inventory is written at build time, from the running
interpreter: every public name of the standard modules plait's pages and signatures
refer to, with the address docs.python.org gives it (``library/<module>.html#<name>``;
builtins on ``functions.html``, ``exceptions.html`` and ``constants.html``). Only names
that exist are listed, so a reference to a misspelt standard name stays unresolved.
The file goes into the build's doctree directory and ``intersphinx_mapping`` names it as
the inventory of ``python``: Sphinx never fetches anything.
"""

from __future__ import annotations

import builtins
import importlib
import types
import zlib
from pathlib import Path

from plait_api import kind_of
from sphinx.application import Sphinx
from sphinx.config import Config

PYTHON_DOCS = "https://docs.python.org/3"

# Modules whose names are documented on the page library/<page>.html. A module comes
# before those that import its names, and an object is linked where its first name is
# documented (``selectors.Mapping`` is ``collections.abc.Mapping``; the canonical name
# ``concurrent.futures.thread.ThreadPoolExecutor`` is ``concurrent.futures``' name).
PAGES = {
    "collections.abc": "collections.abc",
    "typing": "typing",
    "types": "types",
    "contextlib": "contextlib",
    "itertools": "itertools",
    "array": "array",
    "os": "os",
    "signal": "signal",
    "socket": "socket",
    "ssl": "ssl",
    "selectors": "selectors",
    "mmap": "mmap",
    "ctypes": "ctypes",
    "pickle": "pickle",
    "logging": "logging",
    "subprocess": "subprocess",
    "threading": "threading",
    "queue": "queue",
    "multiprocessing": "multiprocessing",
    "multiprocessing.connection": "multiprocessing",
    "multiprocessing.context": "multiprocessing",
    "multiprocessing.managers": "multiprocessing",
    "multiprocessing.pool": "multiprocessing",
    "multiprocessing.process": "multiprocessing",
    "multiprocessing.queues": "multiprocessing",
    "multiprocessing.sharedctypes": "multiprocessing",
    "multiprocessing.synchronize": "multiprocessing",
    "multiprocessing.util": "multiprocessing",
    "multiprocessing.dummy": "multiprocessing",
    "multiprocessing.shared_memory": "multiprocessing.shared_memory",
    "concurrent.futures": "concurrent.futures",
    "concurrent.futures.process": "concurrent.futures",
    "concurrent.futures.thread": "concurrent.futures",
}
# the builtin classes documented on stdtypes.html rather than functions.html
STDTYPES = {"bytearray", "bytes", "dict", "frozenset", "list", "memoryview", "range", "set"}
STDTYPES |= {"str", "tuple"}


def entries() -> list[tuple[str, str, str]]:
    """(name, role, uri) of every listed standard name."""
    found = [("python", "std:label", "index.html")]
    first: dict[int, str] = {}  # id(class or function) -> the uri of its first name

    def add(name: str, value: object, uri: str) -> None:
        kind = kind_of(value)
        if kind != "data":
            uri = first.setdefault(id(value), uri)
        found.append((name, f"py:{kind}", uri))

    for name, value in vars(builtins).items():
        if not name.startswith("_"):
            kind = kind_of(value)
            page = {"exception": "exceptions", "data": "constants"}.get(kind, "functions")
            add(name, value, f"library/{'stdtypes' if name in STDTYPES else page}.html#{name}")
    for module_name, page in PAGES.items():
        module = importlib.import_module(module_name)
        found.append((module_name, "py:module", f"library/{page}.html#module-{module_name}"))
        names = {*getattr(module, "__all__", ()), *(n for n in vars(module) if n[0] != "_")}
        # a class's or function's own name first: array.array, not its alias ArrayType
        own = {n for n in names if getattr(getattr(module, n, None), "__name__", None) == n}
        for name in sorted(names, key=lambda n: (n not in own, n)):
            value = getattr(module, name, None)
            if value is None or isinstance(value, types.ModuleType):
                continue
            qualified = f"{module_name}.{name}"
            add(qualified, value, f"library/{page}.html#{qualified}")
            if isinstance(value, type):  # the canonical name, which autodoc shows for bases
                add(f"{value.__module__}.{value.__qualname__}", value, "")
    return found


def write_inventory(path: Path) -> None:
    header = (
        "# Sphinx inventory version 2\n"
        "# Project: Python\n"
        "# Version: 3\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    body = "".join(f"{name} {role} 1 {uri} -\n" for name, role, uri in entries())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header.encode() + zlib.compress(body.encode()))


def point_intersphinx(app: Sphinx, config: Config) -> None:
    path = Path(app.doctreedir) / "python-objects.inv"
    write_inventory(path)
    config.intersphinx_mapping = {"python": (PYTHON_DOCS, str(path))}


def setup(app: Sphinx) -> dict[str, object]:
    # before sphinx.ext.intersphinx reads the mapping (its handler runs at priority 800)
    app.connect("config-inited", point_intersphinx, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
