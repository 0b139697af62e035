"""Synchronization between threads: locks, conditions, semaphores, events, barriers.

Theory of operation
-------------------
``Lock`` and ``RLock`` are the interpreter's C locks (``_thread``): nothing written in
Python can beat them, and every other primitive here is built on them. They are factory
functions, not classes, exactly as in ``threading``: while the lock-order checker is on
(see ``lockorder``) they return a ``CheckedLock`` instead; while it is off they return the
bare C lock, so the checker costs nothing.

Every blocking primitive reduces to one mechanism, the *waiter*: a fresh C lock, taken
once by its owner before it is published, and taken a second time to sleep. Whoever wants
to wake the owner releases it. A waiter wakes exactly one thread, carries no lost-wakeup
window (a release that happens before the sleep just makes the sleep return at once) and
sleeps with a timeout in the kernel. ``Condition`` keeps a deque of waiters; ``Semaphore``,
``Event`` and ``Barrier`` are written on ``Condition``, the way the standard library writes
them, because their cost is dominated by the sleep and the wakeup, not by the bookkeeping.
The algorithms of ``Condition`` and ``Barrier`` are ``waiting``'s, which the primitives
shared between processes (``plait.ipc.synchronize``) use too; this module gives them the
deque and the interpreter's locks.

Semantics are the standard library's, call for call: the same return values, the same
treatment of timeouts (``None`` waits forever; a ``Condition``/``Event`` wait with a
timeout of zero or less polls), and the same exception classes for bad input, with
messages that name the object. The reprs have the standard shapes, with plait's module
path (``<plait.threads.sync.Event at 0x7f...: unset>``); the camelCase spellings
(``notifyAll``, ``isSet``) still work and warn as the standard ones do; ``_at_fork_reinit``
(a child process resetting a primitive it inherited) exists where the standard has it.

The two reentrant locks under their standard private names: ``_CRLock`` is the C lock
``RLock()`` returns, ``_PyRLock`` the same contract written in Python on one plain lock
(an owner and a count beside it). It is slower and exists for what the C one cannot give:
a lock whose every state change can be followed in a debugger or subclassed.
"""

from __future__ import annotations

import _thread
import sys
import threading
import warnings
from collections import deque
from collections.abc import Callable
from time import monotonic
from typing import Any

from plait.threads import lockorder, waiting

__all__ = [
    "Lock",
    "RLock",
    "Condition",
    "Semaphore",
    "BoundedSemaphore",
    "Event",
    "Barrier",
    "BrokenBarrierError",
    "ThreadError",
]

BrokenBarrierError = waiting.BrokenBarrierError
ThreadError = _thread.error

_allocate_lock = _thread.allocate_lock
_get_ident = _thread.get_ident
_CRLock = _thread.RLock


def Lock() -> Any:
    """A new non-reentrant lock: the interpreter's C lock (a checked one if checking is on).

    ``acquire(blocking=True, timeout=-1)`` blocks until the lock is free or the timeout
    passes; ``release()`` of an unlocked lock raises ``RuntimeError``.
    """
    if lockorder._enabled:
        return lockorder.CheckedLock(reentrant=False)
    return _allocate_lock()


def RLock(*args: Any, **kwargs: Any) -> Any:
    """A new reentrant lock: the interpreter's C RLock (a checked one if checking is on).

    The owning thread may take it again; it is free when released as often as taken.
    ``release()`` by a thread that does not own it raises ``RuntimeError``. Arguments are
    ignored, as the standard factory's are (from 3.13 with a ``DeprecationWarning``).
    """
    if (args or kwargs) and sys.version_info >= (3, 13):
        warnings.warn(
            "Passing arguments to RLock is deprecated and will be removed in 3.15",
            DeprecationWarning,
            stacklevel=2,
        )
    if lockorder._enabled:
        return lockorder.CheckedLock(reentrant=True)
    return _CRLock()


class _PyRLock:
    """A reentrant lock written in Python: one plain lock, its owner's ident and a count.

    The contract of ``RLock()``: ``acquire(blocking=True, timeout=-1)`` takes it (again, at
    once, if the caller already owns it) and returns whether it did; ``release()`` undoes
    one ``acquire`` and raises ``RuntimeError`` if the caller does not own it.

    Invariant: ``_owner`` and ``_count`` are written only by the thread holding ``_block``,
    so another thread reading ``_owner`` may see a stale ident but never its own.
    """

    def __init__(self) -> None:
        self._block = _allocate_lock()
        self._owner: int | None = None
        self._count = 0

    def __repr__(self) -> str:
        cls = type(self)
        state = "locked" if self._block.locked() else "unlocked"
        return (
            f"<{state} {cls.__module__}.{cls.__qualname__} object owner={self._owner_name()!r}"
            f" count={self._count} at {id(self):#x}>"
        )

    def _owner_name(self) -> object:
        owner = self._owner
        thread = threading._active.get(owner) if owner is not None else None
        return thread.name if thread is not None else owner

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock, or one more level of it if the caller owns it already.

        Blocks while another thread owns it, up to ``timeout`` seconds (-1: no limit);
        returns True if taken, False if non-blocking or timed out.
        """
        me = _get_ident()
        if self._owner == me:
            self._count += 1
            return True
        if not self._block.acquire(blocking, timeout):
            return False
        self._owner = me
        self._count = 1
        return True

    __enter__ = acquire

    def release(self) -> None:
        """Give back one level; the last one frees the lock. Never blocks.

        Raises ``RuntimeError`` if the calling thread does not own the lock.
        """
        if self._owner != _get_ident():
            raise RuntimeError(f"cannot release un-acquired lock {self!r}")
        self._count -= 1
        if not self._count:
            self._owner = None
            self._block.release()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _at_fork_reinit(self) -> None:
        self._block._at_fork_reinit()
        self._owner = None
        self._count = 0

    # Condition's protocol: give up every level at once while waiting, then take them back.
    def _release_save(self) -> tuple[int, int | None]:
        if not self._count:
            raise RuntimeError(f"cannot release un-acquired lock {self!r}")
        state = (self._count, self._owner)
        self._count = 0
        self._owner = None
        self._block.release()
        return state

    def _acquire_restore(self, state: tuple[int, int | None]) -> None:
        self._block.acquire()
        self._count, self._owner = state

    def _is_owned(self) -> bool:
        return self._owner == _get_ident()

    def _recursion_count(self) -> int:
        return self._count if self._owner == _get_ident() else 0


class _Waiters(deque):
    """The waiter store of a ``Condition`` (see ``waiting``): C locks, oldest first."""

    def add(self) -> Any:
        waiter = _allocate_lock()
        waiter.acquire()
        self.append(waiter)
        return waiter

    @staticmethod
    def sleep(waiter: Any, timeout: float | None) -> bool:
        if timeout is None:
            return waiter.acquire()
        if timeout > 0:
            return waiter.acquire(True, timeout)
        return waiter.acquire(False)

    def leave(self, waiter: Any, woken: bool) -> bool:
        if not woken:
            try:
                self.remove(waiter)
            except ValueError:  # notify() took it after the timeout
                pass
        return woken

    def wake(self, n: int) -> None:
        while self and n > 0:
            self.popleft().release()
            n -= 1


class Condition(waiting.Condition):
    """A condition variable: threads wait on it until another thread notifies them.

    The lock (an ``RLock()`` by default) must be held to wait or notify (``RuntimeError``
    otherwise).

    >>> import threading
    >>> cond, items = Condition(), []
    >>> def put(item):
    ...     with cond:
    ...         items.append(item)
    ...         cond.notify()
    >>> t = threading.Thread(target=put, args=(42,)); t.start()
    >>> with cond:
    ...     cond.wait_for(lambda: items, timeout=5)  # returns the predicate's last value
    [42]
    >>> t.join(5)
    """

    def __init__(self, lock: Any = None) -> None:
        if lock is None:
            lock = RLock()
        self._bind(lock, _Waiters())
        # Locks with their own save/restore (C RLock, CheckedLock) release every level
        # of a reentrant hold at once during wait(); a plain lock needs only one release.
        self._release_save = getattr(lock, "_release_save", self._release_save_plain)
        self._acquire_restore = getattr(lock, "_acquire_restore", self._acquire_restore_plain)
        self._is_owned = getattr(lock, "_is_owned", self._is_owned_plain)

    def _at_fork_reinit(self) -> None:
        self._lock._at_fork_reinit()
        self._waiters.clear()

    def _release_save_plain(self) -> None:
        self._lock.release()

    def _acquire_restore_plain(self, _state: object) -> None:
        self._lock.acquire()

    def _is_owned_plain(self) -> bool:
        if self._lock.acquire(False):
            self._lock.release()
            return False
        return True

    def notifyAll(self) -> None:  # noqa: N802 (the standard's legacy spelling)
        """Deprecated spelling of ``notify_all``; warns with ``DeprecationWarning``."""
        warnings.warn(
            "notifyAll() is deprecated, use notify_all() instead", DeprecationWarning, stacklevel=2
        )
        self.notify_all()


class Semaphore:
    """A counter that ``acquire`` decrements, waiting while it is zero; ``release`` adds.

    ``Semaphore(value)`` raises ``ValueError`` if ``value`` is negative.
    """

    def __init__(self, value: int = 1) -> None:
        if value < 0:
            raise ValueError(f"semaphore initial value must be >= 0, got {value!r}")
        self._cond = Condition(Lock())
        self._value = value

    def __repr__(self) -> str:
        cls = type(self)
        return f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x}: value={self._value}>"

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Decrement the counter, blocking while it is zero (up to ``timeout`` seconds).

        Returns True on success, False if non-blocking or timed out. Raises
        ``ValueError`` if a timeout is given with ``blocking=False``.
        """
        if not blocking and timeout is not None:
            raise ValueError(f"can't specify timeout for non-blocking acquire of {self!r}")
        deadline = None
        with self._cond:
            while self._value == 0:
                if not blocking:
                    return False
                if timeout is not None:
                    if deadline is None:
                        deadline = monotonic() + timeout
                    else:
                        timeout = deadline - monotonic()
                    if timeout <= 0:
                        return False
                self._cond.wait(timeout)
            self._value -= 1
            return True

    __enter__ = acquire

    def release(self, n: int = 1) -> None:
        """Add ``n`` to the counter and wake up to ``n`` waiters. Never blocks.

        Raises ``ValueError`` if ``n`` is less than one.
        """
        if n < 1:
            raise ValueError(f"n must be one or more, got {n!r} for {self!r}")
        with self._cond:
            self._value += n
            self._cond.notify(n)

    def __exit__(self, *exc: object) -> None:
        self.release()


class BoundedSemaphore(Semaphore):
    """A semaphore that refuses to be released above its initial value.

    ``release`` past the initial value raises ``ValueError``.
    """

    def __init__(self, value: int = 1) -> None:
        super().__init__(value)
        self._initial_value = value

    def __repr__(self) -> str:
        cls = type(self)
        return (
            f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x}:"
            f" value={self._value}/{self._initial_value}>"
        )

    def release(self, n: int = 1) -> None:
        """Add ``n`` to the counter; ``ValueError`` if it would pass the initial value."""
        if n < 1:
            raise ValueError(f"n must be one or more, got {n!r} for {self!r}")
        with self._cond:
            if self._value + n > self._initial_value:
                raise ValueError(f"Semaphore released too many times: {self!r}")
            self._value += n
            self._cond.notify(n)


class Event:
    """A flag threads can wait for: ``set`` wakes every waiter, ``clear`` lowers it."""

    def __init__(self) -> None:
        self._cond = Condition(Lock())
        self._flag = False

    def __repr__(self) -> str:
        cls = type(self)
        status = "set" if self._flag else "unset"
        return f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x}: {status}>"

    def _at_fork_reinit(self) -> None:
        self._cond._at_fork_reinit()

    def is_set(self) -> bool:
        """Whether the flag is up. Never blocks."""
        return self._flag

    def isSet(self) -> bool:  # noqa: N802 (the standard's legacy spelling)
        """Deprecated spelling of ``is_set``; warns with ``DeprecationWarning``."""
        warnings.warn(
            "isSet() is deprecated, use is_set() instead", DeprecationWarning, stacklevel=2
        )
        return self._flag

    def set(self) -> None:
        """Raise the flag and wake every waiting thread. Never blocks."""
        with self._cond:
            self._flag = True
            self._cond.notify_all()

    def clear(self) -> None:
        """Lower the flag. Never blocks."""
        with self._cond:
            self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the flag is up or ``timeout`` seconds pass.

        Returns True if the flag was up or was raised while waiting (even if it was
        lowered again before this thread woke), False if the timeout passed.
        """
        with self._cond:
            signaled = self._flag
            if not signaled:
                signaled = self._cond.wait(timeout)
            return signaled


class Barrier(waiting.Barrier):
    """``parties`` threads wait until all have arrived, then all go on together.

    ``wait()`` returns each thread a distinct index in ``range(parties)``; one of them
    ran ``action`` first. A timeout, an exception in ``action`` or ``abort()`` breaks the
    barrier: every waiter, present and future, gets ``BrokenBarrierError`` until
    ``reset()``.
    """

    def __init__(
        self, parties: int, action: Callable[[], object] | None = None, timeout: float | None = None
    ) -> None:
        if parties < 1:
            raise ValueError(f"parties must be >= 1, got {parties!r}")
        self._cond = Condition(Lock())
        self._action = action
        self._timeout = timeout
        self._parties = parties
        self._state = waiting.FILLING
        self._count = 0


# The public home of these names is the face: reprs, pickles by reference and documentation
# name ``plait.threading``, as the standard's name ``threading``.
for _public in (Lock, RLock, _PyRLock, Condition, Semaphore, BoundedSemaphore, Event, Barrier):
    _public.__module__ = "plait.threading"
del _public
