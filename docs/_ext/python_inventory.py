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

# Modules whose names are documented on the page library/<page>.html.
PAGES = {
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
    "threading": "threading",
    "queue": "queue",
    "asyncio": "asyncio",
    "collections.abc": "collections.abc",
    "contextlib": "contextlib",
    "ctypes": "ctypes",
    "logging": "logging",
    "mmap": "mmap",
    "os": "os",
    "pickle": "pickle",
    "selectors": "selectors",
    "signal": "signal",
    "socket": "socket",
    "subprocess": "subprocess",
    "array": "array",
    "itertools": "itertools",
    "ssl": "ssl",
    "types": "types",
    "typing": "typing",
}


def entries() -> list[tuple[str, str, str]]:
    """(name, role, uri) of every listed standard name."""
    found = [("python", "std:label", "index.html")]
    for name, value in vars(builtins).items():
        if name.startswith("_"):
            continue
        role = f"py:{kind_of(value)}"
        page = {"py:exception": "exceptions", "py:data": "constants"}.get(role, "functions")
        found.append((name, role, f"library/{page}.html#{name}"))
    for module_name, page in PAGES.items():
        module = importlib.import_module(module_name)
        found.append((module_name, "py:module", f"library/{page}.html#module-{module_name}"))
        names = {*getattr(module, "__all__", ()), *(n for n in vars(module) if n[0] != "_")}
        for name in sorted(names):
            value = getattr(module, name, None)
            if value is None or isinstance(value, types.ModuleType):
                continue
            qualified = f"{module_name}.{name}"
            role = f"py:{kind_of(value)}"
            found.append((qualified, role, f"library/{page}.html#{qualified}"))
            canonical = f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', '')}"
            if isinstance(value, type) and canonical != qualified:  # the name autodoc shows
                found.append((canonical, role, f"library/{page}.html#{qualified}"))
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
