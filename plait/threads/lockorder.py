"""The lock-order checker: find potential deadlocks that did not happen this time.

Theory of operation
-------------------
Two threads deadlock when each holds a lock the other wants: thread 1 takes A then B,
thread 2 takes B then A (the "ABBA" pattern). Whether a run actually deadlocks is a matter
of timing; the *possibility* is visible in every run, in the order the locks are taken.
The checker keeps a directed graph over locks: an edge A -> B means "some thread took B
while it held A". Before an edge is added for the first time we look for a path B -> ... ->
A already in the graph; if there is one, the new edge closes a cycle, and some
interleaving of the threads that built the cycle deadlocks. We report it right then, the
first time it becomes possible, with the stack of the acquisition that made the first
edge of the cycle and the stack of the one that closes it.

Cost
----
Off (the default), the checker costs nothing: ``Lock()`` and ``RLock()`` return the
interpreter's C locks and nothing else ever runs on their acquire/release. On
(``PLAIT_CHECK_LOCKS=1`` in the environment when this module is imported, which the
first import of ``plait.threading`` or of ``plait.threads``' locks does, or a call to
``check_lock_order()``), locks created *from then on* are ``CheckedLock`` wrappers that
record every acquisition: one dictionary lookup per held lock and, the first time an edge
is seen, a stack capture and a depth-first search. Locks created before the switch stay
unchecked; turn the checker on at program start.

Invariants: the graph and the report list are guarded by ``_graph_lock``, a raw C lock that
is never itself checked; each thread's list of held checked locks lives in a
``threading.local`` and is touched only by that thread. Nodes are the serial numbers of the
checked locks (an ``id()`` could be reused after a lock is freed); the graph keeps them for
the life of the program, which is the price of a debugging mode.

A report is a ``LockOrderViolation`` appended to ``lock_order_reports()`` and issued as a
``LockOrderWarning`` (a ``RuntimeWarning``) through ``warnings``, so ``-W error`` turns it
into an exception and test suites can catch it with ``pytest.warns``.
"""

from __future__ import annotations

import _thread
import itertools
import os
import threading
import traceback
import warnings
from dataclasses import dataclass

__all__ = [
    "CheckedLock",
    "LockOrderViolation",
    "LockOrderWarning",
    "check_lock_order",
    "lock_order_checking",
    "lock_order_reports",
]


class LockOrderWarning(RuntimeWarning):
    """Two code paths take the same locks in opposite orders: they can deadlock."""


@dataclass(frozen=True)
class LockOrderViolation:
    """One potential deadlock: the acquisition that closed a cycle of lock order.

    ``cycle`` names the locks of the cycle in order, starting and ending with the lock
    that was being taken. ``first_stack`` is where the opposite order was first seen (the
    edge from the lock being taken back towards the held one); ``closing_stack`` is where
    the closing edge was taken.
    """

    cycle: tuple[str, ...]
    first_thread: str
    first_stack: str
    closing_thread: str
    closing_stack: str

    def __str__(self) -> str:
        return (
            "potential deadlock: locks taken in a cycle " + " -> ".join(self.cycle) + "\n"
            f"first order, in thread {self.first_thread!r}:\n{self.first_stack}"
            f"opposite order, in thread {self.closing_thread!r}:\n{self.closing_stack}"
        )


_enabled = os.environ.get("PLAIT_CHECK_LOCKS", "") not in ("", "0")
_graph_lock = _thread.allocate_lock()
# serial of lock A -> {serial of lock B: (thread name, stack)} for each edge A -> B seen.
_edges: dict[int, dict[int, tuple[str, str]]] = {}
_names: dict[int, str] = {}
_reports: list[LockOrderViolation] = []
_serials = itertools.count(1)
_held = threading.local()


def check_lock_order(enabled: bool = True) -> None:
    """Turn the lock-order checker on (or off) for locks created from now on.

    Never blocks. Locks that already exist keep the mode they were created in.
    """
    global _enabled
    _enabled = bool(enabled)


def lock_order_checking() -> bool:
    """Whether locks created now are checked."""
    return _enabled


def lock_order_reports() -> list[LockOrderViolation]:
    """The potential deadlocks found so far, oldest first (a copy)."""
    with _graph_lock:
        return list(_reports)


def _held_list() -> list[CheckedLock]:
    try:
        return _held.locks
    except AttributeError:
        _held.locks = []
        return _held.locks


def _path(start: int, goal: int) -> list[int] | None:
    """A path start -> ... -> goal in the order graph, or None. Caller holds _graph_lock."""
    parents = {start: start}
    todo = [start]
    while todo:
        node = todo.pop()
        if node == goal:
            path = [goal]
            while path[-1] != start:
                path.append(parents[path[-1]])
            return path[::-1]
        for nxt in _edges.get(node, ()):
            if nxt not in parents:
                parents[nxt] = node
                todo.append(nxt)
    return None


def _note_acquire(lock: CheckedLock) -> list[CheckedLock]:
    """Record edges held -> lock for every lock this thread holds; report new cycles.

    Returns this thread's list of held locks, which now ends with ``lock``.
    """
    held = _held_list()
    if held:
        new = [h for h in held if lock._serial not in _edges.get(h._serial, ())]
        if new:
            _add_edges(new, lock)
    held.append(lock)
    return held


def _add_edges(holders: list[CheckedLock], lock: CheckedLock) -> None:
    me = threading.current_thread().name
    stack = "".join(traceback.format_stack()[:-3])
    found = []
    with _graph_lock:
        for holder in holders:
            if holder._serial == lock._serial or lock._serial in _edges.get(holder._serial, ()):
                continue
            back = _path(lock._serial, holder._serial)
            _edges.setdefault(holder._serial, {})[lock._serial] = (me, stack)
            if back is None:
                continue
            first_thread, first_stack = _edges[back[0]][back[1]]
            cycle = tuple(_names[s] for s in back) + (_names[lock._serial],)
            violation = LockOrderViolation(cycle, first_thread, first_stack, me, stack)
            _reports.append(violation)
            found.append(violation)
    for violation in found:
        warnings.warn(str(violation), LockOrderWarning, stacklevel=4)


def _forget(held: list[CheckedLock], lock: CheckedLock) -> None:
    """Take ``lock`` off a thread's held list (that of the thread that took it: a plain
    lock may be released by another thread)."""
    # Locks are usually released in reverse order; search from the end.
    for i in range(len(held) - 1, -1, -1):
        if held[i] is lock:
            del held[i]
            return


class CheckedLock:
    """A ``Lock`` or ``RLock`` whose acquisitions feed the lock-order checker.

    Same interface and semantics as the lock it wraps (``acquire(blocking, timeout)``,
    ``release``, ``locked``, context manager); made by ``Lock()``/``RLock()`` while the
    checker is on.
    """

    __slots__ = ("_lock", "_serial", "_reentrant", "_depth", "_owner", "_held_by", "__weakref__")

    def __init__(self, reentrant: bool = False, name: str | None = None) -> None:
        self._lock = _thread.RLock() if reentrant else _thread.allocate_lock()
        self._reentrant = reentrant
        self._serial = next(_serials)
        self._depth = 0
        self._owner = 0
        self._held_by: list[CheckedLock] = []
        kind = "RLock" if reentrant else "Lock"
        with _graph_lock:
            _names[self._serial] = name or f"{kind}#{self._serial}"

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock; blocks like the wrapped lock. Raises ``ValueError`` on bad timeouts."""
        if self._reentrant and self._owner == _thread.get_ident():
            self._lock.acquire(blocking, timeout)
            self._depth += 1
            return True
        held = _note_acquire(self)
        if not self._lock.acquire(blocking, timeout):
            _forget(held, self)
            return False
        self._held_by = held
        if self._reentrant:
            self._owner = _thread.get_ident()
            self._depth = 1
        return True

    __enter__ = acquire

    def release(self) -> None:
        """Release the lock; ``RuntimeError`` if it is not held (as the C locks)."""
        if self._reentrant:
            if self._owner != _thread.get_ident():
                raise RuntimeError(f"cannot release un-acquired lock {self!r}")
            self._depth -= 1
            if self._depth == 0:
                self._owner = 0
                _forget(self._held_by, self)
            self._lock.release()
            return
        held = self._held_by
        self._lock.release()  # raises RuntimeError if unlocked
        _forget(held, self)

    def __exit__(self, *exc: object) -> None:
        self.release()

    def locked(self) -> bool:
        """Whether some thread holds the lock (a ``Lock``) or it is held at all (an RLock)."""
        if self._reentrant:
            return self._owner != 0
        return self._lock.locked()

    # Condition.wait() uses these: on an RLock they release every level at once.
    def _release_save(self) -> tuple[int, int]:
        if not self._reentrant:
            self.release()
            return (1, 0)
        if self._owner != _thread.get_ident():
            raise RuntimeError(f"cannot wait on un-acquired lock {self!r}")
        state = (self._depth, self._owner)
        self._depth = 0
        self._owner = 0
        _forget(self._held_by, self)
        for _ in range(state[0]):
            self._lock.release()
        return state

    def _acquire_restore(self, state: tuple[int, int]) -> None:
        if not self._reentrant:
            self.acquire()
            return
        self._held_by = _note_acquire(self)
        for _ in range(state[0]):
            self._lock.acquire()
        self._depth, self._owner = state

    def _is_owned(self) -> bool:
        if self._reentrant:
            return self._owner == _thread.get_ident()
        if self._lock.acquire(False):
            self._lock.release()
            return False
        return True

    def _recursion_count(self) -> int:
        if self._reentrant and self._owner == _thread.get_ident():
            return self._depth
        return 0

    def _at_fork_reinit(self) -> None:
        # In a child after fork(): free, owned by nobody, off the calling thread's held list.
        _forget(self._held_by, self)
        self._lock._at_fork_reinit()
        self._depth = 0
        self._owner = 0

    def __repr__(self) -> str:
        state = "locked" if self.locked() else "unlocked"
        return f"<plait checked {_names[self._serial]} {state}>"
