"""Threads whose results are not lost, timers, and the interpreter's thread functions.

Theory of operation
-------------------
An OS thread can only come from the interpreter, and the rest of the ecosystem (logging's
thread names, debuggers, ``threading.enumerate()``, the interpreter joining non-daemon
threads at exit) knows threads only as ``threading.Thread`` objects. So plait's ``Thread``
*is* a ``threading.Thread``: a subclass that adds one thing the standard library drops on
the floor, the outcome of the thread. ``result(timeout)`` returns what the target (or an
overriding ``run``) returned, or re-raises the exception it raised, traceback included.

Capturing the outcome: ``Thread.run`` stores the target's return value or exception.
A subclass that overrides ``run`` (the other classic way to write a thread) has its
``run`` wrapped once, when the class is created (``__init_subclass__``), by a function that
does the same. The exception is stored *and* re-raised, so ``threading.excepthook`` still
reports it as it would for a standard thread: switching to plait changes no output.

The module functions (``current_thread``, ``enumerate``, ``local``, ``settrace`` ...) are
the interpreter's own, re-exported: their state is the interpreter's and must be shared
with every other user of ``threading``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from plait.threads.sync import Event

__all__ = [
    "Thread",
    "Timer",
    "current_thread",
    "main_thread",
    "enumerate",
    "active_count",
    "get_ident",
    "get_native_id",
    "local",
    "excepthook",
    "ExceptHookArgs",
    "settrace",
    "setprofile",
    "gettrace",
    "getprofile",
    "stack_size",
    "TIMEOUT_MAX",
]

current_thread = threading.current_thread
main_thread = threading.main_thread
enumerate = threading.enumerate
active_count = threading.active_count
get_ident = threading.get_ident
get_native_id = threading.get_native_id
local = threading.local
excepthook = threading.excepthook
ExceptHookArgs = threading.ExceptHookArgs
settrace = threading.settrace
setprofile = threading.setprofile
gettrace = threading.gettrace
getprofile = threading.getprofile
stack_size = threading.stack_size
TIMEOUT_MAX = threading.TIMEOUT_MAX

# Added in Python 3.12; re-exported where the running interpreter has them.
for _name in ("settrace_all_threads", "setprofile_all_threads"):
    if hasattr(threading, _name):
        globals()[_name] = getattr(threading, _name)
        __all__.append(_name)

_PENDING = object()


def _capturing(run: Callable[[Thread], Any]) -> Callable[[Thread], Any]:
    """Wrap a subclass's ``run`` so its return value or exception is kept for result()."""

    @functools.wraps(run)
    def wrapper(self: Thread) -> Any:
        try:
            self._outcome = (run(self), None)
        except BaseException as exc:
            self._outcome = (None, exc)
            raise
        return self._outcome[0]

    wrapper._plait_captures = True  # type: ignore[attr-defined]
    return wrapper


class Thread(threading.Thread):
    """A ``threading.Thread`` that keeps its outcome: see ``result``.

    Same constructor and methods as ``threading.Thread``::

        t = Thread(target=sum, args=([1, 2, 3],)); t.start()
        assert t.result(timeout=5) == 6
    """

    _outcome: tuple[Any, BaseException | None] | object = _PENDING

    def __init__(
        self,
        group: None = None,
        target: Callable[..., object] | None = None,
        name: str | None = None,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        daemon: bool | None = None,
    ) -> None:
        super().__init__(group, target, name, args, kwargs, daemon=daemon)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get("run")
        if run is not None and not getattr(run, "_plait_captures", False):
            cls.run = _capturing(run)

    @_capturing
    def run(self) -> Any:
        """Call the target with its arguments and return its value (kept for result())."""
        try:
            if self._target is not None:
                return self._target(*self._args, **self._kwargs)
            return None
        finally:
            # As threading.Thread.run: drop the references so a cycle via the target
            # does not keep the thread object alive.
            del self._target, self._args, self._kwargs

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the thread to end, then return its value or re-raise its exception.

        Blocks up to ``timeout`` seconds (``None``: until it ends). Raises ``TimeoutError``
        if it is still running then, ``RuntimeError`` if it was never started, and
        otherwise whatever the thread's ``run`` raised, with the thread's traceback.
        """
        if not self._started.is_set():
            raise RuntimeError(f"cannot get the result of {self!r}: it was never started")
        self.join(timeout)
        if self.is_alive():
            raise TimeoutError(f"{self!r} still running after {timeout} s")
        outcome = self._outcome
        if outcome is _PENDING:
            # The thread ended without finishing run() through our wrapper: it cannot
            # happen for a started thread unless run() was replaced on the instance.
            raise RuntimeError(f"{self!r} ended without recording an outcome")
        value, exc = outcome  # type: ignore[misc]
        if exc is not None:
            raise exc
        return value


class Timer(Thread):
    """A thread that calls ``function(*args, **kwargs)`` after ``interval`` seconds.

    ``cancel()`` before then stops it; ``result()`` is the function's return value, or
    None if the timer was cancelled.
    """

    def __init__(
        self,
        interval: float,
        function: Callable[..., object],
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.interval = interval
        self.function = function
        self.args = args if args is not None else []
        self.kwargs = kwargs if kwargs is not None else {}
        self.finished = Event()

    def cancel(self) -> None:
        """Stop the timer if it has not fired yet. Never blocks."""
        self.finished.set()

    def run(self) -> Any:
        """Wait ``interval`` seconds unless cancelled, then call the function."""
        try:
            self.finished.wait(self.interval)
            if not self.finished.is_set():
                return self.function(*self.args, **self.kwargs)
            return None
        finally:
            self.finished.set()
