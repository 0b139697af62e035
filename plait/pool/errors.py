"""The errors of pools: what a task's result raises when the task could not finish.

``TimeoutError`` is what ``multiprocessing.TimeoutError`` is to ``multiprocessing.pool``
users (``AsyncResult.get(timeout)``) and also a builtin ``TimeoutError``, so both
``except mp.TimeoutError`` (with plait's face) and ``except TimeoutError`` catch it; the
same class reports a task that overran its per-task timeout. It belongs in
``plait._core.errors`` beside ``ProcessError`` and lives here until it moves there.

``WorkerLostError`` is new: the worker that held the task died (SIGKILL, a segfault,
the OOM killer, ``os._exit``) and carries its pid, exit code and signal.
``MaybeEncodingError`` has the standard name and attributes: a result (or exception)
that cannot be pickled. ``PoolTerminatedError`` fails the results still pending when
``terminate()`` ran, so nothing waits on them forever.
"""

from __future__ import annotations

import builtins
import signal

from plait._core.errors import ProcessError

__all__ = [
    "MaybeEncodingError",
    "PoolTerminatedError",
    "RemoteTraceback",
    "TimeoutError",
    "WorkerLostError",
]


class TimeoutError(ProcessError, builtins.TimeoutError):  # noqa: A001 - the standard name
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


class MaybeEncodingError(ProcessError):
    """A task's result (or exception) could not be pickled to travel back.

    ``exc`` is the repr of the pickling error, ``value`` the repr of the object.
    """

    def __init__(self, exc: object, value: object) -> None:
        self.exc = repr(exc)
        self.value = repr(value)
        super().__init__(self.exc, self.value)

    def __str__(self) -> str:
        return f"Error sending result: '{self.value}'. Reason: '{self.exc}'"

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self}>"


class PoolTerminatedError(ProcessError):
    """The pool was terminated before the task finished."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker; set as its ``__cause__``."""

    def __init__(self, tb: str) -> None:
        self.tb = tb
        super().__init__(tb)

    def __str__(self) -> str:
        return self.tb
