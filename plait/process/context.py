"""Contexts: the ``multiprocessing`` API bound to one start method, as ``get_context`` gives.

A *context* is an object with the module-level API of ``multiprocessing`` bound to one
start method (``get_context("spawn").Process`` always spawns; ``ctx.Queue()``,
``ctx.Pool()`` make plait's queue and pool). plait's contexts are instances of the
standard ``multiprocessing.context.BaseContext`` so that libraries which check
``isinstance(ctx, BaseContext)`` accept them; every method of that class is overridden
here, so no standard implementation runs under plait's names.

One static table, ``api.API_HOMES``, says which plait module defines each name of the API
above the process layer (queues, locks, shared values, the pool, the manager). Contexts
and the ``plait.multiprocessing`` face both read it, and a name's module is imported on
its first use, so this layer names the layers above it only as strings and never imports
them at load time; ``get_context("spawn").Queue`` works whether or not anything imported
``plait.ipc`` before.

The default start method itself is kept by ``start`` (a lean child needs it without this
module): ``DefaultContext`` is a view of it, and ``set_start_method`` here and there are
the same function.
"""

from __future__ import annotations

import importlib
from multiprocessing import context as _standard

from plait._core import errors
from plait.process import cpu, log, start
from plait.process.api import API_HOMES, CONTEXT_KEYWORD
from plait.process.process import (
    ForkProcess,
    ForkServerProcess,
    Process,
    SpawnProcess,
    active_children,
    current_process,
    parent_process,
)

# Annotations only: importing typing would cost every child ~10 ms (see spawn).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "API_HOMES",
    "BaseContext",
    "DefaultContext",
    "ForkContext",
    "SpawnContext",
    "ForkServerContext",
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
    "assert_spawning",
    "get_spawning_popen",
]


def load(name: str) -> Any:
    """The object ``API_HOMES`` names, importing its module on first use."""
    return getattr(importlib.import_module(API_HOMES[name]), name)


def freeze_support() -> None:
    """Does nothing: frozen Windows executables are the only case that needs it."""


def assert_spawning(obj: object) -> None:
    """Nothing to check: plait's objects travel to children under every start method.

    ``multiprocessing`` raises ``RuntimeError`` when a queue or lock is pickled outside
    the start of a child; plait's are shared memory and fds that travel in any message.
    """


def get_spawning_popen() -> None:
    """``None``: plait has no popen objects, and nothing waits for one to be spawning."""
    return None


def _api_method(name: str) -> Any:
    keyword = CONTEXT_KEYWORD.get(name)

    def method(self: BaseContext, *args: Any, **kwargs: Any) -> Any:
        if keyword is not None:
            kwargs.setdefault(keyword, self.get_context())
        return load(name)(*args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"plait's ``{name}`` (from ``{API_HOMES[name]}``)."
    return method


class BaseContext(_standard.BaseContext):
    """The ``multiprocessing`` API bound to one start method, on plait's code."""

    _name: str | None = None

    ProcessError = errors.ProcessError
    BufferTooShort = errors.BufferTooShort
    TimeoutError = errors.TimeoutError
    AuthenticationError = errors.AuthenticationError

    Process = Process
    current_process = staticmethod(current_process)
    parent_process = staticmethod(parent_process)
    active_children = staticmethod(active_children)

    locals().update((name, _api_method(name)) for name in API_HOMES)

    def cpu_count(self) -> int:
        """The CPUs this process may use (see ``plait.process.cpu``)."""
        return cpu.cpu_count()

    def freeze_support(self) -> None:
        """Does nothing: frozen Windows executables are the only case that needs it."""

    def get_logger(self) -> Any:
        """The ``plait`` logger (see ``plait.process.log``)."""
        return log.get_logger()

    def log_to_stderr(self, level: int | str | None = None) -> Any:
        """Send the ``plait`` logger's records to stderr (see ``plait.process.log``)."""
        return log.log_to_stderr(level)

    def allow_connection_pickling(self) -> None:
        """Does nothing: plait's connections can always be pickled into messages."""

    @property
    def reducer(self) -> Any:
        """The ``reduction`` module: plait's ``ForkingPickler`` and fd passing."""
        return importlib.import_module("plait.ipc.reduction")

    @reducer.setter
    def reducer(self, reduction: Any) -> None:
        raise NotImplementedError(
            "plait has one reduction module for every context; register reducers with "
            "plait.multiprocessing.reduction.register(type, reduce) instead"
        )

    def _check_available(self) -> None:
        pass

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
        return start.get_all_start_methods()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.get_start_method(allow_none=True)!r}>"


class ForkContext(BaseContext):
    _name = "fork"
    Process = ForkProcess


class SpawnContext(BaseContext):
    _name = "spawn"
    Process = SpawnProcess


class ForkServerContext(BaseContext):
    _name = "forkserver"
    Process = ForkServerProcess


_concrete: dict[str, BaseContext] = {
    "fork": ForkContext(),
    "spawn": SpawnContext(),
    "forkserver": ForkServerContext(),
}


class DefaultContext(BaseContext):
    """The context of the module-level functions: the method is chosen once, then fixed."""

    def __init__(self, context: BaseContext | None = None) -> None:
        pass  # the chosen method is start's state, shared with lean children

    def get_context(self, method: str | None = None) -> BaseContext:
        if method is None:
            return _concrete[start.get_start_method()]
        return super().get_context(method)

    def get_start_method(self, allow_none: bool = False) -> str | None:
        """The current default start method; fixes it to the platform default if unset.

        With ``allow_none=True`` returns ``None`` instead of fixing an unset method.
        """
        return start.get_start_method(allow_none)

    def set_start_method(self, method: str | None, force: bool = False) -> None:
        """Choose the default start method; once only, unless ``force``.

        Raises ``RuntimeError`` if it was already set (or used) and ``force`` is false,
        ``ValueError`` for an unknown method. ``method=None`` with ``force`` unsets it.
        """
        start.set_start_method(method, force)


_default_context = DefaultContext()
get_context = _default_context.get_context
get_start_method = start.get_start_method
set_start_method = start.set_start_method
get_all_start_methods = start.get_all_start_methods
set_executable = _default_context.set_executable
set_forkserver_preload = _default_context.set_forkserver_preload
