"""Synchronization between tasks of one kernel: Lock, Event, Semaphore, BoundedSemaphore,
Condition.

All of them are a little state plus a ``deque`` of parked tasks (the ``PARK`` trap). Only
one task runs at a time, so no real lock is needed; release hands the resource straight to
the first waiter (``Kernel.wake``), which makes them fair (first come, first served) and
means a task woken with the resource keeps it even if it is cancelled before it runs
again (the cancellation then waits for its next blocking point, after ``acquire`` has
returned, so ``async with lock:`` always releases).

Waiting (``acquire``, ``wait``) is a blocking point; releasing and setting never block and
may be called from plain functions running in the kernel's thread. These objects belong to
the kernel that first uses them; for threads use ``UniversalEvent``/``UniversalQueue``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from . import traps
from .errors import TaskCancelled

__all__ = ["BoundedSemaphore", "Condition", "Event", "Lock", "Semaphore"]


class Event:
    """A flag tasks can wait for. ``set`` wakes them all."""

    def __init__(self) -> None:
        self._flag = False
        self._waiters: deque = deque()

    def __repr__(self) -> str:
        return f"<Event {'set' if self._flag else 'unset'}, {len(self._waiters)} waiting>"

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        """Set the flag and wake every waiting task. Never blocks."""
        self._flag = True
        if self._waiters:
            k = traps.kernel()
            while self._waiters:
                k.wake(self._waiters.popleft(), None)

    def clear(self) -> None:
        self._flag = False

    async def wait(self) -> None:
        """Block until the flag is set (returns at once if it is)."""
        if not self._flag:
            await traps.park(self._waiters, "EVENT_WAIT")

    def statistics(self) -> dict[str, Any]:
        return {"set": self._flag, "waiting": len(self._waiters)}


class Lock:
    """A mutual-exclusion lock owned by the task that acquired it."""

    def __init__(self) -> None:
        self._owner: Any = None
        self._waiters: deque = deque()

    def __repr__(self) -> str:
        state = "locked" if self._owner is not None else "unlocked"
        return f"<Lock {state}, {len(self._waiters)} waiting>"

    def locked(self) -> bool:
        return self._owner is not None

    async def acquire(self) -> bool:
        """Block until the lock is this task's; returns True."""
        me = traps.kernel().current
        if self._owner is None:
            self._owner = me
            return True
        if self._owner is me:
            raise RuntimeError(f"{me!r} already holds this Lock (it is not reentrant)")
        await traps.park(self._waiters, "LOCK_ACQUIRE")
        return True

    def release(self) -> None:
        """Release the lock, handing it to the first waiter. Never blocks.

        Raises ``RuntimeError`` if the calling task does not hold it.
        """
        k = traps.kernel()
        if self._owner is not k.current:
            raise RuntimeError("release of a Lock the current task does not hold")
        if self._waiters:
            self._owner = self._waiters.popleft()
            k.wake(self._owner, None)
        else:
            self._owner = None

    async def __aenter__(self) -> Lock:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.release()

    def statistics(self) -> dict[str, Any]:
        return {"locked": self.locked(), "owner": self._owner, "waiting": len(self._waiters)}


class Semaphore:
    """A counter of permits: ``acquire`` takes one (waiting if none), ``release`` gives one."""

    def __init__(self, value: int = 1) -> None:
        if value < 0:
            raise ValueError(f"semaphore initial value must be >= 0, got {value}")
        self._value = value
        self._waiters: deque = deque()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} value={self._value}, {len(self._waiters)} waiting>"

    @property
    def value(self) -> int:
        return self._value

    def locked(self) -> bool:
        """True if ``acquire`` would wait."""
        return self._value == 0

    async def acquire(self) -> bool:
        """Block until a permit is this task's; returns True."""
        if self._value > 0:
            self._value -= 1
            return True
        await traps.park(self._waiters, "SEMAPHORE_ACQUIRE")
        return True

    def release(self) -> None:
        """Give a permit back (to the first waiter if any). Never blocks."""
        if self._waiters:
            traps.kernel().wake(self._waiters.popleft(), None)
        else:
            self._value += 1

    async def __aenter__(self) -> Semaphore:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.release()

    def statistics(self) -> dict[str, Any]:
        return {"value": self._value, "waiting": len(self._waiters)}


class BoundedSemaphore(Semaphore):
    """A :class:`Semaphore` whose ``release`` raises ``ValueError`` past the initial value."""

    def __init__(self, value: int = 1) -> None:
        super().__init__(value)
        self._bound = value

    def release(self) -> None:
        if not self._waiters and self._value >= self._bound:
            raise ValueError(f"BoundedSemaphore released more than its {self._bound} permits")
        super().release()


class Condition:
    """A condition variable over a :class:`Lock` (a new one unless given)."""

    def __init__(self, lock: Lock | None = None) -> None:
        self._lock = lock if lock is not None else Lock()
        self._waiters: deque = deque()

    def __repr__(self) -> str:
        return f"<Condition {self._lock!r}, {len(self._waiters)} waiting>"

    def locked(self) -> bool:
        return self._lock.locked()

    async def acquire(self) -> bool:
        return await self._lock.acquire()

    def release(self) -> None:
        self._lock.release()

    async def __aenter__(self) -> Condition:
        await self._lock.acquire()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._lock.release()

    def _check_owner(self, what: str) -> None:
        if self._lock._owner is not traps.kernel().current:
            raise RuntimeError(f"Condition.{what}() needs the lock held by the current task")

    async def wait(self) -> None:
        """Release the lock, block until notified, take the lock back, return.

        The lock is held again when ``wait`` returns or raises (also on cancellation).
        """
        self._check_owner("wait")
        self._lock.release()
        notified = False
        try:
            await traps.park(self._waiters, "CONDITION_WAIT")
            notified = True
        finally:
            cancelled: BaseException | None = None
            while True:
                try:
                    await self._lock.acquire()
                    break
                except TaskCancelled as e:  # the lock must come back before we go on
                    cancelled = e
            if cancelled is not None:
                if notified:  # this task will not act on its notification: pass it on
                    self.notify(1)
                raise cancelled

    async def wait_for(self, predicate: Callable[[], Any]) -> Any:
        """``wait`` until ``predicate()`` is true; return its value."""
        result = predicate()
        while not result:
            await self.wait()
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` waiting tasks (they then queue for the lock). Never blocks."""
        self._check_owner("notify")
        k = traps.kernel()
        while n > 0 and self._waiters:
            k.wake(self._waiters.popleft(), None)
            n -= 1

    def notify_all(self) -> None:
        """Wake every waiting task."""
        self.notify(len(self._waiters))
