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

A thread that raised keeps its exception for ``result()``, and that exception's frames
hold the target's local variables, which often refer back to the thread (a method of an
object that owns the thread): a reference cycle the standard library never makes, since it
drops the exception after the report. So once ``threading.excepthook`` has reported it, the
kept exception lets go of the local variables of the frames from ``run`` inward
(``traceback.clear_frames``): the objects the target used are freed by reference counting,
and ``result()`` still re-raises the exception with every file, line and function of the
thread's traceback (from ``run`` inward: the interpreter's bootstrap frames are left out).

The module functions (``current_thread``, ``enumerate``, ``local``, ``settrace`` ...) are
the interpreter's own, re-exported: their state is the interpreter's and must be shared
with every other user of ``threading`` (``interpreter`` explains the state the face
assigns). ``currentThread`` and ``activeCount`` are the deprecated spellings, warning as
the standard ones do.
"""

from __future__ import annotations

import _thread
import functools
import threading
import traceback
import warnings
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, NamedTuple

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
ExceptHookArgs = threading.ExceptHookArgs
settrace = threading.settrace
setprofile = threading.setprofile
gettrace = threading.gettrace
getprofile = threading.getprofile
stack_size = threading.stack_size
TIMEOUT_MAX = threading.TIMEOUT_MAX
#: The interpreter's own excepthook, whatever ``excepthook`` is set to now.
__excepthook__ = _thread._excepthook
_HAVE_THREAD_NATIVE_ID = hasattr(_thread, "get_native_id")

# Added in Python 3.12; re-exported where the running interpreter has them.
for _name in ("settrace_all_threads", "setprofile_all_threads"):
    if hasattr(threading, _name):
        globals()[_name] = getattr(threading, _name)
        __all__.append(_name)


def currentThread() -> threading.Thread:  # noqa: N802 (the standard's legacy spelling)
    """Deprecated spelling of ``current_thread``; warns with ``DeprecationWarning``."""
    warnings.warn(
        "currentThread() is deprecated, use current_thread() instead",
        DeprecationWarning,
        stacklevel=2,
    )
    return current_thread()


def activeCount() -> int:  # noqa: N802 (the standard's legacy spelling)
    """Deprecated spelling of ``active_count``; warns with ``DeprecationWarning``."""
    warnings.warn(
        "activeCount() is deprecated, use active_count() instead", DeprecationWarning, stacklevel=2
    )
    return active_count()


class _Outcome(NamedTuple):
    """How a thread's run() ended: its value, or its exception and the traceback from run()."""

    value: Any
    exception: BaseException | None
    traceback: TracebackType | None


def _capturing(run: Callable[[Thread], Any]) -> Callable[[Thread], Any]:
    """Wrap a subclass's ``run`` so its return value or exception is kept for result()."""

    @functools.wraps(run)
    def wrapper(self: Thread) -> Any:
        try:
            self._outcome = _Outcome(run(self), None, None)
        except BaseException as exc:
            self._outcome = _Outcome(None, exc, exc.__traceback__)
            raise
        return self._outcome.value

    wrapper._plait_captures = True  # type: ignore[attr-defined]
    return wrapper


class Thread(threading.Thread):
    """A ``threading.Thread`` that keeps its outcome: see ``result``.

    Same constructor and methods as ``threading.Thread``.

    >>> t = Thread(target=sum, args=([1, 2, 3],)); t.start()
    >>> t.result(timeout=5)
    6
    """

    _outcome: _Outcome | None = None  # until run() ends

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
        self._invoke_excepthook = _then_forget_frames(self._invoke_excepthook)

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
        if outcome is None:
            # The thread ended without finishing run() through our wrapper: it cannot
            # happen for a started thread unless run() was replaced on the instance.
            raise RuntimeError(f"{self!r} ended without recording an outcome")
        if outcome.exception is not None:
            raise outcome.exception.with_traceback(outcome.traceback)
        return outcome.value

    def _forget_frames(self) -> None:
        """Let the kept exception drop the local variables of its frames from run() inward."""
        outcome = self._outcome
        if outcome is not None and outcome.exception is not None:
            traceback.clear_frames(outcome.traceback)


def _then_forget_frames(report: Callable[[Thread], None]) -> Callable[[Thread], None]:
    """Wrap the interpreter's excepthook invoker: report first, then forget the frames."""

    def invoke_excepthook(thread: Thread) -> None:
        try:
            report(thread)
        finally:
            thread._forget_frames()

    return invoke_excepthook


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


# The public home of these names is the face: reprs, pickles by reference and documentation
# name ``plait.threading``, as the standard's name ``threading``.
for _public in (Thread, Timer, currentThread, activeCount):
    _public.__module__ = "plait.threading"
del _public
