"""The errors of pools: what a task's result raises when the task could not finish.

Each derives from every standard class a program may already catch for the same event,
whether it used ``multiprocessing.pool`` or ``concurrent.futures``:

- ``TimeoutError`` derives from ``multiprocessing.TimeoutError`` (what
  ``AsyncResult.get(timeout)`` raises in the standard pool), from the builtin
  ``TimeoutError`` and from ``concurrent.futures.TimeoutError`` (the builtin one since
  3.11); the same class reports a task that overran its per-task timeout.
- ``SoftTimeoutError`` is new, a ``TimeoutError`` (the class above): raised *inside* a
  task at its soft deadline (``timeout=(soft, hard)``), so the task can clean up; the
  task may catch it and return, and one that does not fails with it.
- ``WorkerLostError`` is new: the worker that held the task died (SIGKILL, a segfault,
  the OOM killer, ``os._exit``) and carries its pid, exit code and signal. It is a
  ``multiprocessing.ProcessError`` and a ``concurrent.futures.process.BrokenProcessPool``
  (what the standard executor raises when a worker dies), though only that task failed.
- ``PoolTerminatedError`` fails the results still pending when ``terminate()`` ran, so
  nothing waits on them forever: a ``ProcessError`` and a
  ``concurrent.futures.BrokenExecutor``.
- ``MaybeEncodingError`` is a subclass of the standard one, with its attributes: a
  result (or exception) that cannot be pickled. ``RemoteTraceback`` is the standard
  class itself.
"""

from __future__ import annotations

import builtins
import concurrent.futures
import signal
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import pool as _standard_pool

from plait._core import errors as _core
from plait._core.errors import ProcessError

__all__ = [
    "MaybeEncodingError",
    "PoolTerminatedError",
    "RemoteTraceback",
    "SoftTimeoutError",
    "TimeoutError",
    "WorkerLostError",
]


# concurrent.futures.TimeoutError is the builtin one from 3.11 on, its own class before.
_FUTURES_TIMEOUT = (
    ()
    if concurrent.futures.TimeoutError is builtins.TimeoutError
    else (concurrent.futures.TimeoutError,)
)


class TimeoutError(_core.TimeoutError, builtins.TimeoutError, *_FUTURES_TIMEOUT):  # noqa: A001
    """A result was not ready in time, or a task overran its per-task timeout."""


class SoftTimeoutError(Exception):
    """Raised inside a task that ran past its soft timeout (``timeout=(soft, hard)``).

    An ``Exception`` only, as billiard's ``SoftTimeLimitExceeded``: not an ``OSError``
    nor a ``TimeoutError``, so that the task's own ``except OSError`` around I/O, or a
    retry loop on timeouts, does not swallow it and run on into the hard kill."""


class WorkerLostError(ProcessError, BrokenProcessPool):
    """The worker process running the task ended before it returned a result.

    ``pid`` is the worker's pid, ``exitcode`` its exit code as ``Process.exitcode``
    reports it (negative: killed by that signal), ``signal`` the signal number or None,
    ``reason`` why the pool killed it, if it did (its memory limit), or None.
    """

    def __init__(
        self, pid: int, exitcode: int | None, task: str = "task", reason: str | None = None
    ) -> None:
        self.pid = pid
        self.exitcode = exitcode
        self.task = task
        self.reason = reason
        self.signal = -exitcode if exitcode is not None and exitcode < 0 else None
        if reason is not None:
            how = reason
        elif self.signal is not None:
            try:
                how = f"killed by {signal.Signals(self.signal).name}"
            except ValueError:
                how = f"killed by signal {self.signal}"
        else:
            how = f"exited with code {exitcode}"
        super().__init__(f"worker {pid} {how} while running its {task}")

    def __reduce__(self):
        return type(self), (self.pid, self.exitcode, self.task, self.reason)


class MaybeEncodingError(_standard_pool.MaybeEncodingError):
    """A task's result (or exception) could not be pickled to travel back.

    ``exc`` is the repr of the pickling error, ``value`` the repr of the object.
    """

    def __init__(self, exc: object, value: object) -> None:
        super().__init__(exc, value)


class PoolTerminatedError(ProcessError, concurrent.futures.BrokenExecutor):
    """The pool was terminated before the task finished."""


# The traceback of an exception raised in a worker, set as its ``__cause__``: the
# standard class itself, so tools that look for it find it.
RemoteTraceback = _standard_pool.RemoteTraceback
