"""Names a package loads from their modules on first use (PEP 562).

``import plait.multiprocessing`` must stay as cheap as ``import multiprocessing``, and a
spawned worker that imports ``plait.pool.worker`` must not pay for the pool's scheduler.
Such a package maps each public name to the module that defines it and hands the
module-level ``__getattr__``/``__dir__`` made here; the first lookup of a name imports its
module and keeps the value in the package's namespace, so later lookups are plain.

This module imports only ``sys``: ``plait.process`` uses it, so every spawned child loads
it, and ``importlib`` (which imports ``warnings``) and ``collections.abc`` would cost a lean
child more than the names it defers. Imports go through ``__import__``.
"""

from __future__ import annotations

import sys

# Annotations only: see above.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

__all__ = ["lazy_names"]


def lazy_names(
    package: str,
    home: Mapping[str, str],
    names: Iterable[str],
    submodules: Iterable[str] = (),
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``home`` maps a name to the module
    (absolute) it is imported from, or to ``"module:attribute"`` when the attribute
    there has another name; ``names`` are listed by ``dir()`` besides the
    package's own. Each of ``submodules`` is imported when first read as an attribute
    (``multiprocessing.util`` works after a bare ``import multiprocessing``). An unknown
    name raises ``AttributeError``, which lets ``from package import submodule`` go on
    to import the submodule."""
    namespace = sys.modules[package].__dict__
    listed = frozenset(names)
    lazy_modules = frozenset(submodules)

    def __getattr__(name: str) -> object:  # noqa: N807 - the module hook's name
        if name in lazy_modules:
            try:
                return _import(f"{package}.{name}")
            except ModuleNotFoundError as e:
                if e.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from e
        try:
            module = home[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        module, _, attribute = module.partition(":")
        value = getattr(_import(module), attribute or name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:  # noqa: N807 - the module hook's name
        return sorted(set(namespace) | listed)

    return __getattr__, __dir__


def _import(module: str) -> object:
    """The module named ``module`` (absolute), imported if it was not."""
    __import__(module)
    return sys.modules[module]
