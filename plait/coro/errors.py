"""The exceptions of the coroutine kernel.

Cancellation is a ``BaseException`` (as in asyncio) so that ``except Exception:`` in a
task's code does not swallow it by accident. Everything a user is expected to catch by a
standard name derives from the standard class: a timeout is a ``TimeoutError``, a closed
socket is an ``OSError``, joining a cancelled task raises ``concurrent.futures``'
``CancelledError``, a short read is an ``EOFError``.
"""

from __future__ import annotations

import errno

__all__ = [
    "ClosedResourceError",
    "DeadlockError",
    "IncompleteRead",
    "NoKernelError",
    "ResourceBusy",
    "SlowStepWarning",
    "TaskCancelled",
    "TaskTimeout",
    "TimeoutCancelled",
]


class TaskCancelled(BaseException):
    """Thrown into a task at its next blocking point when the task is cancelled."""


class TimeoutCancelled(TaskCancelled):
    """Thrown into a task when a ``timeout_after``/``ignore_after`` scope expires.

    The scope that expired turns it into :class:`TaskTimeout` (or swallows it, for
    ``ignore_after``); an enclosing scope lets it pass untouched, so the nearest deadline
    wins.
    """

    def __init__(self, scope: object) -> None:
        super().__init__(f"deadline of {scope!r} passed")
        self.scope = scope


class TaskTimeout(TimeoutError):
    """Raised by ``timeout_after`` when its deadline passes; carries ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"operation timed out after {seconds:g} s")
        self.seconds = seconds

    def __reduce__(self) -> tuple:  # its args are the message, not what __init__ takes
        return type(self), (self.seconds,), self.__dict__


class NoKernelError(RuntimeError):
    """A plait trap was awaited outside ``plait.coro.run()`` (or in a foreign event loop)."""


class DeadlockError(RuntimeError):
    """Every task waits and nothing can wake any of them (no socket, timer, thread or
    signal is waited on). ``run()`` cancels them all and raises this, naming each task and
    what it waits for, instead of hanging forever."""


class ResourceBusy(RuntimeError):
    """Two tasks waited for the same event of the same file at the same time."""


class ClosedResourceError(OSError):
    """The socket or stream was closed (by this task or another one)."""

    def __init__(self, what: str) -> None:
        super().__init__(errno.EBADF, f"{what} is closed")
        self.what = what

    def __reduce__(self) -> tuple:  # as TaskTimeout's: to cross a process boundary
        return type(self), (self.what,), self.__dict__


class IncompleteRead(EOFError):
    """``read_exactly`` met end of file early; ``partial`` holds the bytes that came."""

    def __init__(self, partial: bytes, expected: int) -> None:
        super().__init__(f"end of stream after {len(partial)} of {expected} bytes")
        self.partial = partial
        self.expected = expected

    def __reduce__(self) -> tuple:  # as TaskTimeout's: to cross a process boundary
        return type(self), (self.partial, self.expected), self.__dict__


class SlowStepWarning(RuntimeWarning):
    """One step of a task held the kernel longer than the threshold given to ``run``."""
