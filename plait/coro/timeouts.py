"""Time: ``sleep``, ``clock`` and the timeout scopes ``timeout_after``/``ignore_after``.

A scope arms one kernel timer when it is entered. If the deadline passes while the task
is inside the scope, the kernel throws :class:`TimeoutCancelled` (carrying the scope)
into the task at its current or next blocking point. On the way out each scope looks at
the exception: its own expiry becomes :class:`TaskTimeout` (``timeout_after``) or is
swallowed (``ignore_after``, which then sets ``expired``); an expiry of an enclosing scope
passes through untouched. So scopes nest and the nearest deadline wins, and an inner
scope with a later deadline than its outer one simply never fires first.

Deadlines are in the kernel's clock (:meth:`Kernel.time`): ``time.monotonic``, or the
test's ``MockClock`` given to ``run(..., clock=...)``, so a scope of 60 s on a mock clock
expires when that clock says so.

Leaving a scope early makes its timer stale; the kernel skips stale timers and rebuilds
the heap when they pile up, so a scope costs one heap push and nothing on exit.

A scope is a blocking point only if the code inside blocks: a deadline that passes while
the task computes without awaiting is delivered at the next await (or not at all if the
scope ends first).
"""

from __future__ import annotations

import time
from typing import Any

from . import traps
from .errors import TaskTimeout, TimeoutCancelled

__all__ = ["clock", "ignore_after", "sleep", "timeout_after"]

sleep = traps.sleep


def clock() -> float:
    """The clock of the kernel running in this thread, in seconds: ``time.monotonic()``,
    or its ``MockClock``'s time. Outside a kernel, ``time.monotonic()``. Never blocks."""
    k = traps.state.kernel
    return time.monotonic() if k is None else k.time()


class _Scope:
    __slots__ = ("seconds", "deadline", "expired", "_fired", "_task", "_kernel", "_seq", "_active")

    def __init__(self, seconds: float) -> None:
        if seconds is None or seconds != seconds:
            raise ValueError(f"a timeout needs a number of seconds, got {seconds!r}")
        self.seconds = seconds
        self.deadline = 0.0
        self.expired = False
        self._fired = False  # its timer fired (the block may have ended first)
        self._active = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.seconds:g} s>"

    # kernel hooks
    def timer_live(self, seq: int) -> bool:
        return self._active and seq == self._seq

    def expire(self, kernel: Any) -> None:
        self._fired = True
        kernel.cancel(self._task, TimeoutCancelled(self))

    async def __aenter__(self) -> _Scope:
        if self._active:
            raise RuntimeError(f"{self!r} is already entered")
        k = traps.kernel()
        self._kernel = k
        self._task = k.current
        self.deadline = k.time() + self.seconds
        self.expired = self._fired = False
        self._active = True
        self._seq = k.call_at(self.deadline, self)
        return self

    def _leave(self, exc: BaseException | None) -> bool:
        """Close the scope; True if ``exc`` is this scope's own expiry."""
        self._active = False
        task = self._task
        pending = task._cancel_pending
        if isinstance(pending, TimeoutCancelled) and pending.scope is self:
            task._cancel_pending = None  # the block ended before the expiry reached it
        if not self._fired:
            self._kernel.timer_cancelled()
        # expired: the block was cut short by this scope, not merely outlived its deadline
        self.expired = isinstance(exc, TimeoutCancelled) and exc.scope is self
        return self.expired


class timeout_after(_Scope):  # noqa: N801 - named like a function, as in curio
    """``async with timeout_after(s):`` raises :class:`TaskTimeout` (a ``TimeoutError``)
    if the block has not finished ``s`` seconds after it started.

    >>> from plait.coro import run, sleep
    >>> async def main():
    ...     try:
    ...         async with timeout_after(0.1):
    ...             await sleep(10)  # a reply that does not come, say
    ...     except TaskTimeout as exc:
    ...         return exc
    >>> run(main)
    TaskTimeout('operation timed out after 0.1 s')
    """

    __slots__ = ()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if self._leave(exc):
            raise TaskTimeout(self.seconds) from None
        return False


class ignore_after(_Scope):  # noqa: N801 - named like a function, as in curio
    """``async with ignore_after(s) as scope:`` silently leaves the block after ``s``
    seconds; ``scope.expired`` then is true.
    """

    __slots__ = ()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        return self._leave(exc)
