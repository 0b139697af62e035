"""Start methods: which one a new child uses, and whether it may start one now.

This is the light half of the context machinery, the part every process needs: the
default start method (chosen once with ``set_start_method``, else the platform default,
which is the running Python's ``multiprocessing`` default: ``fork`` on Linux before 3.14,
``forkserver`` from 3.14, ``spawn`` on macOS), and ``importing_main``, set while a child
re-runs its parent's main script. It imports no start method: ``Process.start`` (in
``process``) maps a method name to the code that starts a child, and the child's side
(``bootstrap``) sets both values here as it adopts its parent's state. The context
objects (``get_context()``) live in ``context``, which is imported on first use: they are
instances of the standard ``BaseContext`` class, and a lean child that never asks for a
context does not pay for importing ``multiprocessing``.
"""

from __future__ import annotations

import sys

__all__ = [
    "START_METHODS",
    "platform_default",
    "get_all_start_methods",
    "get_start_method",
    "set_start_method",
    "force_start_method",
    "importing_main",
]

START_METHODS = ("fork", "spawn", "forkserver")

# The default start method once chosen (set_start_method, or fixed on first use).
_chosen: str | None = None

# True while a spawned child (or the fork server) re-runs its parent's main script: a
# script without the ``if __name__ == "__main__":`` guard would otherwise start processes
# from every child, recursively.
importing_main = False


def platform_default() -> str:
    """The start method ``multiprocessing`` of this Python uses by default here."""
    if sys.platform == "darwin":
        return "spawn"
    return "fork" if sys.version_info < (3, 14) else "forkserver"


def get_all_start_methods() -> list[str]:
    """The start methods this platform supports, the default first."""
    default = platform_default()
    return [default] + [m for m in START_METHODS if m != default]


def check_method(method: object) -> str:
    """``method`` if it names a start method; ``ValueError`` otherwise."""
    if method not in START_METHODS:
        raise ValueError(f"cannot find context for {method!r}")
    return method  # type: ignore[return-value]


def get_start_method(allow_none: bool = False) -> str | None:
    """The current default start method; fixes it to the platform default if unset.

    With ``allow_none=True`` returns ``None`` instead of fixing an unset method.
    """
    global _chosen
    if _chosen is None:
        if allow_none:
            return None
        _chosen = platform_default()
    return _chosen


def set_start_method(method: str | None, force: bool = False) -> None:
    """Choose the default start method; once only, unless ``force``.

    Raises ``RuntimeError`` if it was already set (or used) and ``force`` is false,
    ``ValueError`` for an unknown method. ``method=None`` with ``force`` unsets it;
    without ``force`` it fixes the platform default, as in ``multiprocessing``.
    """
    global _chosen
    if _chosen is not None and not force:
        raise RuntimeError("context has already been set")
    if method is None and force:
        _chosen = None
        return
    _chosen = platform_default() if method is None else check_method(method)


def force_start_method(method: str) -> None:
    """In a child: adopt the start method that started it as the default."""
    global _chosen
    _chosen = method
