"""Locks, semaphores, conditions, events and barriers shared between processes.

Theory of operation
-------------------
Every primitive keeps its state in a small ``memfd`` mapped ``MAP_SHARED`` by each
process that uses it (a ``plait._core.block.Block``); the words in it are operated on by the C core
``plait._core._sync`` with atomic instructions and futex waits (its source opens with
the essay on the algorithms). Nothing lives in a server process or a named semaphore:

- a child started by ``fork`` inherits the mapping and the fd with the object;
- pickling a primitive (a ``Process`` argument, a message through a plait
  ``Connection``) sends the memfd itself (``fdpass.reduce_fd``); the receiver maps it
  and operates on the same memory. Outside such a transfer pickling raises
  ``PicklingError``, as the standard library refuses to pickle its locks except for a
  child being spawned;
- the memory is freed by the kernel when the last process that maps it is gone, also
  after ``kill -9``: nothing is left in ``/dev/shm``.

``Lock``, ``RLock``, ``Semaphore`` and ``BoundedSemaphore`` are the C type ``SemLock``
itself (subclassed only for construction, pickling and ``repr``), so ``acquire``,
``release`` and ``with`` cost one C call. ``Condition`` and ``Barrier`` are built on
them in Python with ``threading``'s algorithms: a ``Condition`` waiter sleeps on a
semaphore of its own, in a slot of the condition's block that names its process, so
``notify`` never waits for anyone and skips waiters that were killed in ``wait``
(``multiprocessing``'s ``notify`` waits for each woken waiter to acknowledge, forever
if it was killed). ``Event`` is one futex word of its own.

``Condition`` and ``Barrier`` are the algorithms of ``plait.threads.waiting``, which
the thread primitives use too, over this module's storage: the condition's waiters in
slots of its block, the barrier's state and count in a block of their own. That module
imports nothing of plait (``plait.threads`` loads its submodules lazily), so a spawned
child that unpickles a lock does not pay for the lock-order checker.

The owner-died rule (beyond the standard library). A ``Lock`` or ``RLock`` whose holder
process died (killed, crashed) does not block its waiters forever. A waiter that is
blocked on it notices within 0.1 s of the death (it checks the holder's pid between
sleeps); the first such waiter frees the lock and raises ``OwnerDiedError`` naming the
dead ``pid``. That waiter does not hold the lock: it learns that the state the lock
guarded may be half-updated, and may repair it after acquiring the lock again. Every
other waiter simply gets the lock as if it had been released. A non-blocking
``acquire(False)`` does not check, and returns ``False`` while the dead pid is in the
lock. Semaphores have no owner, and no such rule.

Semantics and errors follow ``multiprocessing.synchronize``: ``acquire(block=True,
timeout=None)`` (a negative timeout polls), releasing an unheld ``Lock`` or an
over-released ``BoundedSemaphore`` raises ``ValueError``, releasing an ``RLock`` held by
another thread or process raises ``AssertionError``, a broken ``Barrier`` raises
``threading.BrokenBarrierError``. Each primitive holds one fd (``Condition`` two: its
lock's and its own; ``Barrier`` three).
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import Any

from plait._core._sync import (
    EVENT,
    LOCK,
    RECORD_SIZE,
    RLOCK,
    SEM_VALUE_MAX,
    SEMAPHORE,
    OwnerDiedError,
    SemLock,
)
from plait._core.block import Block
from plait.threads import waiting

__all__ = [
    "RECURSIVE_MUTEX",
    "SEMAPHORE",
    "SEM_VALUE_MAX",
    "Barrier",
    "BoundedSemaphore",
    "Condition",
    "Event",
    "Lock",
    "OwnerDiedError",
    "RLock",
    "SemLock",
    "Semaphore",
]

RECURSIVE_MUTEX = RLOCK  # the standard name of the kind an RLock's ``kind`` reports


def _record(block: Block, offset: int, *init: int) -> SemLock:
    """A plain ``SemLock`` on the record at ``offset`` of ``block`` (initialized if
    ``init`` = (kind, value, maxvalue) is given)."""
    sem = SemLock()
    sem._attach(block.mm, offset, *init)
    return sem


class _Primitive(SemLock):
    """A ``SemLock`` that owns its block: construction, pickling, ``repr``."""

    def _create(self, kind: int, value: int, maxvalue: int) -> None:
        self._block = Block(RECORD_SIZE)
        self._attach(self._block.mm, 0, kind, value, maxvalue)

    def __reduce__(self):
        return _rebuild_primitive, (type(self), self._block)

    @property
    def _semlock(self) -> SemLock:
        """The standard library's name for the C lock inside a primitive: here the
        primitive itself (code such as the standard ``Queue`` reads
        ``sem._semlock._get_value()``)."""
        return self

    def _is_zero(self) -> bool:
        """Whether the count is 0 (the standard ``SemLock._is_zero``)."""
        return self._get_value() == 0


def _rebuild_primitive(cls: type, block: Block) -> _Primitive:
    obj = cls.__new__(cls)
    obj._block = block
    obj._attach(block.mm, 0)
    return obj


def _owner_text(sem: SemLock) -> str:
    """The holder of a lock as the standard ``repr`` names it: this process's name (and
    thread's, outside the main thread), ``None``, ``SomeOtherThread`` or
    ``SomeOtherProcess``."""
    if sem._is_mine():
        from plait.process import current_process  # noqa: PLC0415 - repr only

        name = current_process().name
        thread = threading.current_thread().name
        return name if thread == "MainThread" else f"{name}|{thread}"
    pid = sem._owner()
    if pid is None:
        return "None"
    return "SomeOtherThread" if pid == os.getpid() else "SomeOtherProcess"


class Lock(_Primitive):
    """A non-recursive lock shared between processes; any process may release it.

    ``acquire(block=True, timeout=None)`` blocks until it is free, or ``timeout``
    seconds (then returns False); raises ``OwnerDiedError`` when the holder died (see
    the module's owner-died rule). ``release()`` raises ``ValueError`` if it is free.
    """

    def __init__(self) -> None:
        self._create(LOCK, 1, 1)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}(owner={_owner_text(self)})>"


class RLock(_Primitive):
    """A recursive lock shared between processes: only its holder thread releases it.

    Blocks and raises like ``Lock``; ``release()`` by a thread that does not hold it
    raises ``AssertionError`` (as ``multiprocessing.RLock``).
    """

    def __init__(self) -> None:
        self._create(RLOCK, 1, 1)

    def __repr__(self) -> str:
        owner = _owner_text(self)
        count = self._count() if self._is_mine() or owner == "None" else "nonzero"
        return f"<{type(self).__name__}({owner}, {count})>"


class Semaphore(_Primitive):
    """A counting semaphore shared between processes.

    ``acquire`` blocks while the count is 0 (up to ``timeout`` seconds, then False).
    Raises ``ValueError`` for a negative ``value``.
    """

    def __init__(self, value: int = 1) -> None:
        self._create(SEMAPHORE, _initial(value), SEM_VALUE_MAX)

    def get_value(self) -> int:
        """The current count."""
        return self._get_value()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}(value={self._get_value()})>"


class BoundedSemaphore(Semaphore):
    """A semaphore whose count may not exceed its initial value (``ValueError``)."""

    def __init__(self, value: int = 1) -> None:
        value = _initial(value)
        self._create(SEMAPHORE, value, value)  # 0 too: it can never be released

    def __repr__(self) -> str:
        return f"<{type(self).__name__}(value={self._get_value()}, maxvalue={self.maxvalue})>"


def _initial(value: int) -> int:
    if not isinstance(value, int):
        raise TypeError(f"semaphore value must be an int, not {type(value).__name__}")
    value = int(value)  # True is 1, as for the standard semaphores
    if value < 0:
        raise ValueError("semaphore initial value must be >= 0")
    if value > SEM_VALUE_MAX:
        raise ValueError(f"semaphore initial value must be <= {SEM_VALUE_MAX}")
    return value


# The block of a Condition: a header, then one slot per waiter. A waiter sleeps on the
# semaphore record of its slot (its wakeup); everything else is read and written only by
# holders of the condition's lock.
_SLOTS = 1024
_NEVER_USED, _FREE, _WAITING, _NOTIFIED = 0, 1, 2, 3  # a slot's state


class _Header(ctypes.Structure):
    _fields_ = (
        ("next_ticket", ctypes.c_int64),  # the ticket the next waiter takes
        ("waiting", ctypes.c_int32),  # slots in the WAITING state
        ("top", ctypes.c_int32),  # every slot in use is below it
    )


class _Slot(ctypes.Structure):
    _fields_ = (
        ("wakeup", ctypes.c_ubyte * RECORD_SIZE),  # the waiter's semaphore (_sync's record)
        ("pid", ctypes.c_int32),  # the waiter's process
        ("state", ctypes.c_int32),
        ("ticket", ctypes.c_int64),  # the order of arrival: notify wakes the lowest first
    )


class _ConditionBlock(ctypes.Structure):
    _fields_ = (("header", _Header), ("slots", _Slot * _SLOTS))


def _wakeup_at(slot: int) -> int:
    """The offset in the block of slot ``slot``'s semaphore record."""
    return _ConditionBlock.slots.offset + slot * ctypes.sizeof(_Slot) + _Slot.wakeup.offset


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs; a zombie runs no more code and counts as dead."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: err towards alive, as the lock's owner check does
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] not in (b"Z", b"X")


class _NoCounter:
    """Where the standard ``Condition`` has a counting semaphore plait's has none."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def get_value(self) -> int:
        raise NotImplementedError(
            f"Condition.{self.name} is a semaphore of the standard library's algorithm; "
            "plait's Condition keeps its waiters in slots instead, and its repr() shows "
            "how many wait"
        )


class _Slots:
    """The waiter store of a ``Condition`` across processes (see ``waiting``): the slots
    of the condition's block. A waiter is the index of its slot."""

    __slots__ = ("block", "header", "slots", "wakeups")

    def __init__(self, block: Block) -> None:
        self.block = block
        layout = _ConditionBlock.from_buffer(block.mm)
        self.header = layout.header
        self.slots = layout.slots
        self.wakeups: dict[int, SemLock] = {}  # slot -> its semaphore, in this process

    def __len__(self) -> int:
        return self.header.waiting

    def add(self, _me=os.getpid) -> int:
        """Take a slot as a waiter (the lock is held); return its index."""
        header, slots = self.header, self.slots
        top = header.top
        slot = next((i for i in range(top) if slots[i].state <= _FREE), top)
        if slot == _SLOTS:
            slot = self._reclaim_dead()
        # A fresh wakeup of value 0: nobody sleeps on a free slot's record.
        self.wakeups[slot] = _record(self.block, _wakeup_at(slot), SEMAPHORE, 0, 1)
        waiter = slots[slot]
        waiter.pid = _me()
        waiter.state = _WAITING
        waiter.ticket = header.next_ticket
        header.next_ticket += 1
        header.waiting += 1
        header.top = max(top, slot + 1)
        return slot

    def _reclaim_dead(self) -> int:
        """All slots are taken: free those of dead processes; return one, or raise."""
        free = None
        for slot, waiter in enumerate(self.slots):
            if not _process_alive(waiter.pid):
                if waiter.state == _WAITING:
                    self.header.waiting -= 1
                waiter.state = _FREE
                free = slot if free is None else free
        if free is None:
            raise RuntimeError(f"more than {_SLOTS} threads wait on one Condition at once")
        return free

    def sleep(self, slot: int, timeout: float | None) -> bool:
        return self.wakeups[slot].acquire(True, timeout)

    def leave(self, slot: int, notified: bool) -> bool:
        """Give the slot back (the lock is held again); return whether it was notified."""
        header, slots = self.header, self.slots
        waiter = slots[slot]
        if waiter.state == _NOTIFIED:
            if not notified:  # the wakeup came after the timeout: it is still ours
                notified = self.wakeups[slot].acquire(False)
        else:  # timed out (or interrupted) before any notify
            header.waiting -= 1
        waiter.state = _FREE
        top = header.top
        while top and slots[top - 1].state <= _FREE:
            top -= 1
        header.top = top
        return notified

    def wake(self, n: int) -> None:
        """Wake up to ``n`` waiters, oldest first, skipping dead ones; never blocks."""
        header, slots = self.header, self.slots
        if not header.waiting:
            return
        waiting = sorted(
            (waiter.ticket, slot, waiter)
            for slot, waiter in ((i, slots[i]) for i in range(header.top))
            if waiter.state == _WAITING
        )
        # Waking them all needs no look at who is alive; choosing some does (a killed
        # waiter must not take the place of a live one). Its cost, a /proc read per
        # waiter of another process, is paid only then.
        choose = n < len(waiting)
        me = os.getpid()
        for _, slot, waiter in waiting:
            header.waiting -= 1
            if choose and waiter.pid != me and not _process_alive(waiter.pid):
                waiter.state = _FREE  # killed in wait(): nobody to wake
                continue
            waiter.state = _NOTIFIED
            self._wakeup(slot).release()
            n -= 1
            if not n:
                return

    def _wakeup(self, slot: int) -> SemLock:
        wakeup = self.wakeups.get(slot)
        if wakeup is None:
            wakeup = self.wakeups[slot] = _record(self.block, _wakeup_at(slot))
        return wakeup


class Condition(waiting.Condition):
    """A condition variable shared between processes, on ``lock`` (default a new RLock).

    ``wait`` must be called holding the lock; it releases it (all levels of an RLock),
    blocks until notified or ``timeout`` seconds pass, and re-acquires it. ``notify(n)``
    wakes up to ``n`` waiters, in the order they began to wait, and never blocks: a
    waiter whose process died in ``wait`` (killed) is skipped and its place freed, so
    it neither swallows a notification nor makes ``notify`` wait for it. Calling
    either without holding the lock raises ``AssertionError``, as
    ``multiprocessing.Condition``; ``wait`` raises ``RuntimeError`` when more than 1024
    threads wait at once.

    How: the algorithm of ``plait.threads.waiting.Condition`` (a waiter sleeps on a
    semaphore of its own; notify releases the oldest ones), with the waiters kept in
    slots in shared memory, each slot naming its process. ``multiprocessing`` instead
    counts sleepers in shared semaphores and has ``notify`` wait until each woken waiter
    has acknowledged, which hangs forever on a waiter that was killed.
    """

    def __init__(self, lock: Lock | RLock | None = None) -> None:
        if lock is None:
            lock = RLock()
        elif not isinstance(lock, SemLock) or lock.kind == SEMAPHORE:
            kind = f"{type(lock).__module__}.{type(lock).__qualname__}"
            raise TypeError(
                f"a plait Condition needs a plait Lock or RLock (plait.multiprocessing.Lock()), "
                f"not a {kind}"
            )
        self._setup(lock, Block(ctypes.sizeof(_ConditionBlock)))

    def _setup(self, lock: SemLock, block: Block) -> None:
        # The semaphores of the standard library's algorithm, which code written against
        # it reads: their get_value() says why there is no value, as the standard one
        # does where sem_getvalue() is missing.
        self._sleeping_count = _NoCounter("_sleeping_count")
        self._woken_count = _NoCounter("_woken_count")
        self._wait_semaphore = _NoCounter("_wait_semaphore")
        self._block = block
        self._bind(lock, _Slots(block))

    def __getstate__(self):
        return self._lock, self._block

    def __setstate__(self, state) -> None:
        self._setup(*state)

    # The lock protocol of ``waiting.Condition`` on a plait Lock or RLock.
    def _release_save(self) -> int:
        lock = self._lock
        count = lock._count()
        for _ in range(count):
            lock.release()
        return count

    def _acquire_restore(self, count: int) -> None:
        for _ in range(count):
            self._lock.acquire()

    def _is_owned(self) -> bool:
        return self._lock._is_mine()

    def _not_owned(self, action: str) -> Exception:
        if action == "wait":
            return AssertionError("must acquire() condition before using wait()")
        return AssertionError("lock is not owned")


class Event:
    """An event flag shared between processes: ``set``, ``clear``, ``is_set``, ``wait``.

    One futex word (``_sync``'s EVENT record): ``set`` wakes every waiter in every
    process with one system call, and only when someone waits.
    """

    def __init__(self) -> None:
        self._setup(Block(RECORD_SIZE), True)

    def _setup(self, block: Block, create: bool) -> None:
        self._block = block
        self._flag = _record(block, 0, *((EVENT, 0, 1) if create else ()))

    def __getstate__(self):
        return self._block

    def __setstate__(self, block) -> None:
        self._setup(block, False)

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return self._flag._event_is_set()

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        self._flag._event_set()

    def clear(self) -> None:
        """Reset the flag."""
        self._flag._event_clear()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the flag is set or ``timeout`` seconds pass; return the flag."""
        return self._flag._event_wait(timeout)

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} at {id(self):#x} {'set' if self.is_set() else 'unset'}>"


class _BarrierBlock(ctypes.Structure):
    """A barrier's block: read and written under its condition's lock."""

    _fields_ = (("state", ctypes.c_int32), ("count", ctypes.c_int32))  # see waiting.Barrier


class Barrier(waiting.Barrier):
    """A barrier for ``parties`` threads or processes, as ``threading.Barrier``.

    ``wait(timeout=None)`` blocks until ``parties`` callers wait (then returns each a
    distinct index in ``range(parties)``; one of them first runs ``action``), or raises
    ``threading.BrokenBarrierError`` when the barrier is broken, reset, or ``timeout``
    passes (which breaks it). Raises ``ValueError`` for ``parties`` < 1.

    How: the algorithm of ``plait.threads.waiting.Barrier`` on a plait ``Condition``,
    its state and count in a block of their own.
    """

    def __init__(
        self, parties: int, action: Callable[[], Any] | None = None, timeout: float | None = None
    ) -> None:
        if not isinstance(parties, int) or parties < 1:
            raise ValueError(f"parties must be an int >= 1, not {parties!r}")
        self._setup(
            Condition(Lock()), Block(ctypes.sizeof(_BarrierBlock)), parties, action, timeout
        )

    def _setup(self, cond, block, parties, action, timeout) -> None:
        self._cond = cond
        self._block = block
        self._shared = _BarrierBlock.from_buffer(block.mm)
        self._parties = parties
        self._action = action
        self._timeout = timeout

    def __getstate__(self):
        return self._cond, self._block, self._parties, self._action, self._timeout

    def __setstate__(self, state) -> None:
        self._setup(*state)

    @property
    def _state(self) -> int:
        return self._shared.state

    @_state.setter
    def _state(self, value: int) -> None:
        self._shared.state = value

    @property
    def _count(self) -> int:
        return self._shared.count

    @_count.setter
    def _count(self, value: int) -> None:
        self._shared.count = value
