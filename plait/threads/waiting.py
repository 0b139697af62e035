"""Waiting for a condition: the algorithms of ``Condition``, ``wait_for`` and ``Barrier``.

Theory of operation
-------------------
Threads of one process (``plait.threads.sync``) and threads of many processes
(``plait.ipc.synchronize``) wait for a condition the same way; only where the state lives
differs. So each algorithm is written here once, over two small protocols that each world
fills in with its own storage.

The lock protocol, the one ``threading.Condition`` uses on its lock:

- ``_release_save()``: give up the lock entirely (every level of a reentrant one) and
  return what ``_acquire_restore`` needs to take it back;
- ``_acquire_restore(state)``: take it back as it was;
- ``_is_owned()``: whether the calling thread holds it;
- ``_not_owned(action)``: the exception for ``wait``/``notify`` without the lock
  (``RuntimeError`` for threads, ``AssertionError`` for processes, as the standard
  modules raise).

The waiter store (``_waiters``), where a waiter is a semaphore of value 0 that only its
owner sleeps on and whoever wakes it releases (a waiter wakes exactly one thread, and a
release that comes before the sleep just makes the sleep return at once, so there is no
lost wakeup):

- ``add()``: a new waiter, the newest (the lock is held);
- ``sleep(waiter, timeout)``: sleep on it (the lock is not held); True if woken. A
  timeout of zero or less only polls, ``None`` waits without limit;
- ``leave(waiter, woken)``: take the waiter out again (the lock is held again); return
  whether it was woken, which a store may find true when the wakeup came just after the
  timeout;
- ``wake(n)``: wake the ``n`` oldest waiters and forget them (the lock is held; never
  blocks);
- ``len()``: how many wait.

In one process the store is a deque of C locks; across processes it is a table of slots
in shared memory, each holding a semaphore record and the pid of its waiter (so a waiter
killed in ``wait`` can be skipped).

``Barrier`` is ``threading``'s state machine on such a ``Condition``: callers arrive
while it is *filling*; the last one trips it (runs ``action``) and it is *draining* until
every caller of that trip has left; ``reset()`` while callers wait makes it *resetting*
until they have left; a timeout, an exception in ``action`` or ``abort()`` makes it
*broken* until ``reset()``. The subclass keeps ``_state`` and ``_count`` where its
callers can see them (plain attributes, or shared memory behind properties) and builds
``_cond``, ``_parties``, ``_action`` and ``_timeout``.

This module imports nothing of plait, and little else: every process that receives a
lock imports it (through ``plait.ipc.synchronize``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from time import monotonic
from typing import Any, TypeVar

__all__ = ["Barrier", "BrokenBarrierError", "Condition"]

T = TypeVar("T")

BrokenBarrierError = threading.BrokenBarrierError


class Condition:
    """A condition variable over the lock protocol and the waiter store (see the module).

    The subclass sets ``_lock`` and ``_waiters`` (``_bind``) and the lock protocol's
    methods. The lock must be held to wait or notify (an example:
    ``plait.threads.sync.Condition``).
    """

    _lock: Any
    _waiters: Any

    def _bind(self, lock: Any, waiters: Any) -> None:
        self._lock = lock
        self._waiters = waiters
        self.acquire = lock.acquire
        self.release = lock.release

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._lock.__exit__(*exc)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}({self._lock!r}, {len(self._waiters)})>"

    def _not_owned(self, action: str) -> Exception:
        return RuntimeError(f"cannot {action} on un-acquired lock of {self!r}")

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, sleep until notified or ``timeout`` seconds pass, retake it.

        Blocks. Returns False if the timeout passed, True otherwise; a ``timeout`` of
        zero or less only polls. Raises (``_not_owned``) if the caller does not hold the
        lock.
        """
        if not self._is_owned():
            raise self._not_owned("wait")
        waiters = self._waiters
        waiter = waiters.add()
        saved = self._release_save()
        woken = False
        try:
            woken = waiters.sleep(waiter, timeout)
        finally:
            self._acquire_restore(saved)
            woken = waiters.leave(waiter, woken)
        return woken

    def wait_for(self, predicate: Callable[[], T], timeout: float | None = None) -> T:
        """Wait until ``predicate()`` is true or ``timeout`` passes; return its last value.

        Blocks; the lock must be held.
        """
        deadline = None
        result = predicate()
        while not result:
            if timeout is not None:
                if deadline is None:
                    deadline = monotonic() + timeout
                remaining = deadline - monotonic()
                if remaining <= 0:
                    break
                self.wait(remaining)
            else:
                self.wait()
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` waiters, the oldest first. Never blocks; the lock must be held."""
        if not self._is_owned():
            raise self._not_owned("notify")
        if n > 0:
            self._waiters.wake(n)

    def notify_all(self) -> None:
        """Wake every waiter. Never blocks; the lock must be held."""
        self.notify(len(self._waiters))


# Barrier states: callers arriving (filling), the trip's callers leaving (draining),
# a reset() waiting for the draining callers to leave (resetting), broken.
FILLING, DRAINING, RESETTING, BROKEN = 0, 1, -1, -2


class Barrier:
    """``parties`` callers wait until all have arrived, then all go on together.

    ``wait()`` returns each caller a distinct index in ``range(parties)``; one of them
    ran ``action`` first. A timeout, an exception in ``action`` or ``abort()`` breaks the
    barrier: every waiter, present and future, gets ``BrokenBarrierError`` until
    ``reset()``. (The subclass provides the state; see the module.)
    """

    _cond: Condition
    _parties: int
    _action: Callable[[], object] | None
    _timeout: float | None
    _state: int
    _count: int

    def __repr__(self) -> str:
        where = f"{type(self).__module__}.{type(self).__qualname__} at {id(self):#x}"
        if self._state == BROKEN:
            return f"<{where}: broken>"
        return f"<{where}: waiters={self.n_waiting}/{self._parties}>"

    def wait(self, timeout: float | None = None) -> int:
        """Block until ``parties`` callers are waiting; return this caller's index.

        Raises ``BrokenBarrierError`` if the barrier is or becomes broken (including by
        this wait timing out, after ``timeout`` or the barrier's default timeout).
        """
        if timeout is None:
            timeout = self._timeout
        cond = self._cond
        with cond:
            # Let the callers of the previous trip (or a reset) leave first.
            cond.wait_for(lambda: self._state not in (DRAINING, RESETTING))
            if self._state != FILLING:
                raise BrokenBarrierError(f"{self!r} is broken")
            index = self._count
            self._count = index + 1
            try:
                if index + 1 == self._parties:
                    self._trip()
                else:
                    if not cond.wait_for(lambda: self._state != FILLING, timeout):
                        self._break()
                        raise BrokenBarrierError(f"{self!r}: wait timed out")
                    if self._state < 0:
                        raise BrokenBarrierError(f"{self!r} was broken while waiting")
                return index
            finally:
                self._count -= 1
                if self._count == 0 and self._state in (DRAINING, RESETTING):
                    self._state = FILLING
                    cond.notify_all()

    def _trip(self) -> None:
        try:
            if self._action is not None:
                self._action()
            self._state = DRAINING
            self._cond.notify_all()
        except BaseException:
            self._break()
            raise

    def _break(self) -> None:
        self._state = BROKEN
        self._cond.notify_all()

    def reset(self) -> None:
        """Return the barrier to its empty state; current waiters get BrokenBarrierError."""
        with self._cond:
            if self._count > 0:
                if self._state in (FILLING, BROKEN):
                    self._state = RESETTING
            else:
                self._state = FILLING
            self._cond.notify_all()

    def abort(self) -> None:
        """Break the barrier: current and future waiters get BrokenBarrierError."""
        with self._cond:
            self._break()

    @property
    def parties(self) -> int:
        """The number of callers it takes to trip the barrier."""
        return self._parties

    @property
    def n_waiting(self) -> int:
        """The number of callers waiting now."""
        return self._count if self._state == FILLING else 0

    @property
    def broken(self) -> bool:
        """Whether the barrier is broken."""
        return self._state == BROKEN
