"""The errors of pools: what a task's result raises when the task could not finish.

``TimeoutError`` derives from ``multiprocessing.TimeoutError`` (what
``AsyncResult.get(timeout)`` raises in the standard pool) and from the builtin
``TimeoutError``, so ``except multiprocessing.TimeoutError``, ``except TimeoutError``
and ``except concurrent.futures.TimeoutError`` (3.11+) all catch it; the same class
reports a task that overran its per-task timeout.

``WorkerLostError`` is new: the worker that held the task died (SIGKILL, a segfault,
the OOM killer, ``os._exit``) and carries its pid, exit code and signal.
``MaybeEncodingError`` is a subclass of the standard one, with its attributes: a
result (or exception) that cannot be pickled. ``PoolTerminatedError`` fails the
results still pending when ``terminate()`` ran, so nothing waits on them forever.
``RemoteTraceback`` is the standard class itself.
"""

from __future__ import annotations

import builtins
import signal
from multiprocessing import pool as _standard_pool

from plait._core import errors as _core
from plait._core.errors import ProcessError

__all__ = [
    "MaybeEncodingError",
    "PoolTerminatedError",
    "RemoteTraceback",
    "TimeoutError",
    "WorkerLostError",
]


class TimeoutError(_core.TimeoutError, builtins.TimeoutError):  # noqa: A001 - the standard name
    """A result was not ready in time, or a task overran its per-task timeout."""


class WorkerLostError(ProcessError):
    """The worker process running the task ended before it returned a result.

    ``pid`` is the worker's pid, ``exitcode`` its exit code as ``Process.exitcode``
    reports it (negative: killed by that signal), ``signal`` the signal number or None.
    """

    def __init__(self, pid: int, exitcode: int | None, task: str = "task") -> None:
        self.pid = pid
        self.exitcode = exitcode
        self.signal = -exitcode if exitcode is not None and exitcode < 0 else None
        if self.signal is not None:
            try:
                how = f"killed by {signal.Signals(self.signal).name}"
            except ValueError:
                how = f"killed by signal {self.signal}"
        else:
            how = f"exited with code {exitcode}"
        super().__init__(f"worker {pid} {how} while running its {task}")

    def __reduce__(self):
        return type(self), (self.pid, self.exitcode)


class MaybeEncodingError(_standard_pool.MaybeEncodingError):
    """A task's result (or exception) could not be pickled to travel back.

    ``exc`` is the repr of the pickling error, ``value`` the repr of the object.
    """

    def __init__(self, exc: object, value: object) -> None:
        super().__init__(exc, value)


class PoolTerminatedError(ProcessError):
    """The pool was terminated before the task finished."""


# The traceback of an exception raised in a worker, set as its ``__cause__``: the
# standard class itself, so tools that look for it find it.
RemoteTraceback = _standard_pool.RemoteTraceback
