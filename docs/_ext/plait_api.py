"""The API reference, generated from each module's ``__all__`` when the site is built.

``{plait-api} plait.multiprocessing`` (a directive on a page of ``docs/api/``) documents
every name of that module's ``__all__``. One object is often public under several names
(``plait.multiprocessing.Queue`` is ``plait.ipc.Queue``): it is documented in full once,
under its first name in ``MODULES`` (the faces come first, as users import them), and
every other name gets a one-line entry pointing there. Every name therefore has its own
entry in the site's ``objects.inv`` (``tests/docs`` checks the faces' ``__all__``
against it), and a class's methods are not printed twice.

A module with an empty ``__all__`` (``plait.multiprocessing.context`` mirrors the
standard module, which has none) contributes its public non-module attributes.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from plait.process.api import SUBMODULES  # the standard package's public submodules

# The order decides where an object is documented in full: its first name here.
MODULES = [
    "plait",
    "plait.patch",
    "plait.run",
    "plait.multiprocessing",
    *(f"plait.multiprocessing.{name}" for name in SUBMODULES),
    "plait.multiprocessing.dummy.connection",
    "plait.threading",
    "plait.queue",
    "plait.futures",
    "plait.pool",
    "plait.coro",
    "plait.managers",
    "plait.process",
    "plait.ipc",
    "plait.threads",
    "plait.integrations.joblib",
]


def public_names(module: types.ModuleType) -> list[str]:
    names = list(getattr(module, "__all__", ()))
    if names:
        return names
    return sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    )


STANDARD_FACES = {
    "plait.multiprocessing": "multiprocessing",
    "plait.threading": "threading",
    "plait.queue": "queue",
    "plait.futures": "concurrent.futures",
}
ROLES = {"class": "class", "exception": "exc", "function": "func", "data": "data"}


def kind_of(value: object) -> str:
    """The autodoc directive (and py object type) for a value."""
    if isinstance(value, type):
        return "exception" if issubclass(value, BaseException) else "class"
    if callable(value):
        return "function"
    return "data"


def standard_name(qualified: str) -> str | None:
    """``plait.threading.local`` -> ``threading.local``: the standard module's name."""
    for face, standard in STANDARD_FACES.items():
        if qualified.startswith(face + "."):
            return standard + qualified[len(face) :]
    return None


def homes() -> dict[int, str]:
    """id(object) -> the qualified name it is documented under in full."""
    home: dict[int, str] = {}
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in public_names(module):
            value = getattr(module, name)
            if kind_of(value) != "data":
                home.setdefault(id(value), f"{module_name}.{name}")
            if isinstance(value, types.ModuleType) and callable(value):  # plait.patch
                home.setdefault(id(value.patch), f"{module_name}.{name}")
    return home


def entry(module_name: str, name: str, value: object, home: str) -> list[str]:
    """The reStructuredText that documents ``module_name.name``."""
    kind = kind_of(value)
    qualified = f"{module_name}.{name}"
    if isinstance(value, types.ModuleType) and not callable(value):
        return [
            f".. py:data:: {name}",
            f"   :module: {module_name}",
            "",
            f"   The submodule ``{value.__name__}``.",
            "",
        ]
    if kind == "data":
        if getattr(value, "__doc__", None) == type(value).__doc__:  # no doc of its own
            kind_name = type(value).__qualname__
            if type(value).__module__ != "builtins":
                kind_name = f"{type(value).__module__}.{kind_name}"
            return [
                f".. py:data:: {name}",
                f"   :module: {module_name}",
                f"   :type: {kind_name}",
                "",
            ]
        return [f".. autodata:: {qualified}", "   :no-value:", ""]
    if home != qualified:
        return [
            f".. py:{kind}:: {name}",
            f"   :module: {module_name}",
            "",
            f"   The same object as :py:{ROLES[kind]}:`{home}`.",
            "",
        ]
    if isinstance(value, types.ModuleType):  # plait.patch: a module that calls its patch()
        function = value.patch
        lines = [
            f".. py:function:: {name}{inspect.signature(function)}",
            f"   :module: {module_name}",
            "",
        ]
        return lines + [f"   {line}" for line in inspect.getdoc(function).splitlines()] + [""]
    if not getattr(value, "__module__", "").startswith("plait"):
        standard = standard_name(qualified) or f"{value.__module__}.{value.__qualname__}"
        return [
            f".. py:{kind}:: {name}",
            f"   :module: {module_name}",
            "",
            f"   The standard :py:{ROLES[kind]}:`{standard}` itself: plait serves the standard",
            "   object under this name.",
            "",
        ]
    lines = [f".. auto{kind}:: {qualified}"]
    if kind != "function":
        lines += ["   :members:", "   :show-inheritance:"]
    return lines + [""]


class PlaitAPI(SphinxDirective):
    """Documents one module's public names (see the module docstring)."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        module_name = self.arguments[0]
        if module_name not in MODULES:
            raise self.error(f"{module_name} is not in plait_api.MODULES; add it there")
        module = importlib.import_module(module_name)
        home = self.env.app.plait_api_homes
        if callable(module):  # plait.patch: its name is the function's (see entry())
            lines = [f".. py:currentmodule:: {module_name}", ""]
        else:
            lines = [f".. automodule:: {module_name}", "   :no-members:", ""]
        for name in public_names(module):
            value = getattr(module, name)
            lines += entry(module_name, name, value, home.get(id(value), f"{module_name}.{name}"))
        container = nodes.container()
        self.state.nested_parse(
            StringList(lines, source=f"<plait-api {module_name}>"), 0, container
        )
        return container.children


def compute_homes(app: Sphinx) -> None:
    app.plait_api_homes = homes()
    app.plait_api_public = public_objects()


def skip_class_aliases(
    app: Sphinx, what: str, name: str, obj: object, skip: bool, options
) -> bool | None:
    """A class attribute that names a class defined elsewhere (``BaseContext.Process``)
    is that class's alias, documented under its own name."""
    if isinstance(obj, type) and "." not in obj.__qualname__:
        return True
    return None


def drop_object_base(app: Sphinx, name: str, obj: type, options, bases: list) -> None:
    """Every class derives from ``object``: "Bases: object" says nothing."""
    if bases == [object]:
        bases.clear()


def public_objects() -> set[str]:
    return {
        f"{module}.{name}"
        for module in MODULES
        for name in public_names(importlib.import_module(module))
    }


def resolves(path: str) -> bool:
    """Whether ``path`` (``package.module.Name``) names an existing object."""
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for part in parts[split:]:
                value = getattr(value, part)
        except AttributeError:
            return False
        return True
    return False


def plait_classes(name: str) -> list[type]:
    """The classes named ``name`` that plait's loaded modules define."""
    found = []
    for module_name, module in list(sys.modules.items()):
        value = getattr(module, name, None) if module_name.startswith("plait") else None
        if isinstance(value, type) and value.__module__.startswith("plait") and value not in found:
            found.append(value)
    return found


def internal_reference(app: Sphinx, env, node, contnode):
    """References that Sphinx cannot resolve by name alone, mostly from signatures.

    A plait class named by a path other than its public one (its defining module, or a
    string annotation such as ``-> MapJob`` whose name is imported for type checkers
    only) links to the entry that documents it. plait's internal classes (``_Primitive``,
    ``IMapJob``, a ``TypeVar``) and other packages' private ones
    (``joblib._parallel_backends``) print unlinked: no page documents them. A reference
    to a name that exists nowhere is left alone, and fails the nitpicky build."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    classes = plait_classes(target.rsplit(".", 1)[-1])
    home = app.plait_api_homes.get(id(classes[0])) if len(classes) == 1 else None
    if home is not None:
        domain = env.domains["py"]
        return domain.resolve_xref(env, node["refdoc"], app.builder, "class", home, node, contnode)
    paths = [target]
    if node.get("py:module"):
        paths.append(f"{node['py:module']}.{target}")
    for path in paths:
        private = any(part.startswith("_") for part in path.split("."))
        internal = path.startswith("plait.") and path not in app.plait_api_public
        if (private or internal) and resolves(path):
            return contnode
    return contnode if classes else None


def setup(app: Sphinx) -> dict[str, object]:
    app.connect("builder-inited", compute_homes)
    app.connect("autodoc-skip-member", skip_class_aliases)
    app.connect("autodoc-process-bases", drop_object_base)
    app.connect("missing-reference", internal_reference)
    app.add_directive("plait-api", PlaitAPI)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
