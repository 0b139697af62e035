"""Start methods and contexts: ``get_context``, ``set_start_method`` and friends.

A *context* is an object with the module-level API of the process layer bound to one
start method (``get_context("spawn").Process`` always spawns), as in ``multiprocessing``.
The default context resolves the method when a process starts: the one chosen with
``set_start_method``, else the platform default, which is the same as the running
Python's ``multiprocessing`` default (``fork`` on Linux before 3.14, ``forkserver``
from 3.14, ``spawn`` on macOS), so a program behaves the same after switching imports.

Higher layers extend every context with ``BaseContext.provide``: this layer cannot know
about queues, locks or pools (they sit above it), so ``plait.ipc``, ``plait.pool`` and
``plait.managers`` each offer their constructors as ``ctx.Queue()``, ``ctx.Pool()``,
``ctx.Manager()`` when they are imported (the drop-in face names them with
``provide_on_import``, and a context imports them on first use);
``child_handle`` is the one place that maps a method name to the
code that starts a child, and it imports that code only when the method is first used.
"""

from __future__ import annotations

import sys

from plait.process import cpu, log
from plait.process.process import Process, active_children, current_process, parent_process

# Annotations only: importing typing would cost every child ~10 ms (see spawn).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

__all__ = [
    "BaseContext",
    "DefaultContext",
    "ForkProcess",
    "SpawnProcess",
    "ForkServerProcess",
    "get_context",
    "get_start_method",
    "set_start_method",
    "get_all_start_methods",
    "freeze_support",
    "set_executable",
    "set_forkserver_preload",
]

START_METHODS = ("fork", "spawn", "forkserver")

# Context attribute -> the module that provides it when imported (provide_on_import).
_on_import: dict[str, str] = {}


def _platform_default() -> str:
    if sys.platform == "darwin":
        return "spawn"
    return "fork" if sys.version_info < (3, 14) else "forkserver"


def freeze_support() -> None:
    """Does nothing: frozen Windows executables are the only case that needs it."""


class ForkProcess(Process):
    """A ``Process`` that always starts with ``fork``."""

    _start_method = "fork"


class SpawnProcess(Process):
    """A ``Process`` that always starts with ``spawn``."""

    _start_method = "spawn"


class ForkServerProcess(Process):
    """A ``Process`` that always starts with ``forkserver``."""

    _start_method = "forkserver"


class BaseContext:
    """The process layer's module API, bound to one start method."""

    _name: str | None = None
    Process = Process
    current_process = staticmethod(current_process)
    parent_process = staticmethod(parent_process)
    active_children = staticmethod(active_children)
    cpu_count = staticmethod(cpu.cpu_count)
    freeze_support = staticmethod(freeze_support)
    get_logger = staticmethod(log.get_logger)
    log_to_stderr = staticmethod(log.log_to_stderr)

    @classmethod
    def provide(cls, name: str, factory: Any, *, context_keyword: str | None = None) -> None:
        """Offer ``ctx.<name>(...)`` on every context, calling ``factory``.

        With ``context_keyword``, the context is passed to ``factory`` under that keyword
        unless the caller gave one (``ctx.Pool(2)`` is ``Pool(2, context=ctx)``).
        """
        if context_keyword is None:
            setattr(cls, name, staticmethod(factory))
            return

        def bound(self, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault(context_keyword, self)
            return factory(*args, **kwargs)

        bound.__name__ = bound.__qualname__ = name
        bound.__doc__ = factory.__doc__
        setattr(cls, name, bound)

    @staticmethod
    def provide_on_import(module: str, names: Iterable[str]) -> None:
        """Offer ``ctx.<name>`` for each of ``names`` before ``module`` is imported.

        The first such lookup imports ``module``, which must ``provide`` the name. The
        drop-in face uses this so ``import plait.multiprocessing`` stays cheap while
        ``get_context("spawn").Pool`` keeps working.
        """
        for name in names:
            _on_import.setdefault(name, module)

    def __getattr__(self, name: str) -> Any:
        module = _on_import.get(name)
        if module is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        import importlib  # noqa: PLC0415 - on first use

        importlib.import_module(module)
        return object.__getattribute__(self, name)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(_on_import))

    def get_context(self, method: str | None = None) -> BaseContext:
        """The context of ``method``, or this context for ``None``.

        Raises ``ValueError`` for an unknown method name.
        """
        if method is None:
            return self
        try:
            return _concrete[method]
        except (KeyError, TypeError):
            raise ValueError(f"cannot find context for {method!r}") from None

    def get_start_method(self, allow_none: bool = False) -> str | None:
        return self._name

    def set_start_method(self, method: str | None, force: bool = False) -> None:
        raise ValueError("cannot set start method of concrete context")

    def set_executable(self, executable: str) -> None:
        """The interpreter spawned children and fork servers run (``sys.executable``)."""
        from plait.process.spawn import set_executable  # noqa: PLC0415 - on first use

        set_executable(executable)

    def set_forkserver_preload(self, module_names: list[str]) -> None:
        """Modules a fork server imports before it forks children (see ``forkserver``)."""
        from plait.process.forkserver import set_forkserver_preload  # noqa: PLC0415

        set_forkserver_preload(module_names)

    def get_all_start_methods(self) -> list[str]:
        """The start methods this platform supports, the default first."""
        default = _platform_default()
        return [default] + [m for m in START_METHODS if m != default]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.get_start_method(allow_none=True)!r}>"


class _ForkContext(BaseContext):
    _name = "fork"
    Process = ForkProcess


class _SpawnContext(BaseContext):
    _name = "spawn"
    Process = SpawnProcess


class _ForkServerContext(BaseContext):
    _name = "forkserver"
    Process = ForkServerProcess


_concrete: dict[str, BaseContext] = {
    "fork": _ForkContext(),
    "spawn": _SpawnContext(),
    "forkserver": _ForkServerContext(),
}


class DefaultContext(BaseContext):
    """The context of the module-level functions: the method is chosen once, then fixed."""

    def __init__(self) -> None:
        self._actual: BaseContext | None = None

    def get_context(self, method: str | None = None) -> BaseContext:
        if method is None:
            if self._actual is None:
                self._actual = _concrete[_platform_default()]
            return self._actual
        return super().get_context(method)

    def get_start_method(self, allow_none: bool = False) -> str | None:
        """The current default start method; fixes it to the platform default if unset.

        With ``allow_none=True`` returns ``None`` instead of fixing an unset method.
        """
        if self._actual is None:
            if allow_none:
                return None
            self._actual = _concrete[_platform_default()]
        return self._actual._name

    def set_start_method(self, method: str | None, force: bool = False) -> None:
        """Choose the default start method; once only, unless ``force``.

        Raises ``RuntimeError`` if it was already set (or used) and ``force`` is false,
        ``ValueError`` for an unknown method. ``method=None`` with ``force`` unsets it.
        """
        if self._actual is not None and not force:
            raise RuntimeError("context has already been set")
        if method is None and force:
            self._actual = None
            return
        self._actual = self.get_context(method)


_default = DefaultContext()
get_context = _default.get_context
get_start_method = _default.get_start_method
set_start_method = _default.set_start_method
get_all_start_methods = _default.get_all_start_methods
set_executable = _default.set_executable
set_forkserver_preload = _default.set_forkserver_preload


def force_start_method(method: str) -> None:
    """In a child: adopt the start method that started it as the default."""
    _default._actual = _concrete[method]


def child_handle(process_obj: Process) -> Any:
    """Start ``process_obj`` with its start method; return the handle of the child."""
    method = process_obj._start_method or _default.get_start_method()
    try:
        handle = _handles[method]
    except KeyError:
        handle = _handles[method] = _load_handle(method)
    return handle(process_obj)


# Start method -> handle class, filled on first use (an import statement per start would
# cost a forked child's parent copy-on-write faults in the import machinery).
_handles: dict[str, Any] = {}


def _load_handle(method: str) -> Any:
    if method == "fork":
        from plait.process.fork import ForkChild  # noqa: PLC0415 - on first use

        return ForkChild
    if method == "spawn":
        from plait.process.spawn import SpawnChild  # noqa: PLC0415 - on first use

        return SpawnChild
    from plait.process.forkserver import ForkServerChild  # noqa: PLC0415 - on first use

    return ForkServerChild
