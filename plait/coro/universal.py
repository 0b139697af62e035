"""Queues and events shared by plait tasks, asyncio tasks and ordinary threads at once.

The state (items, flag) sits behind one ``threading.Lock``. Threads wait the ordinary way,
on a ``threading.Condition`` of that lock, with a timeout. Coroutines must never block the
kernel's thread, so a coroutine that has to wait files ``(kernel, task)`` in a waiter list
and suspends with the ``SUSPEND`` trap; whoever changes the state (a thread or a task, of
this kernel or another one) pops a waiter under the lock and wakes it with
``Kernel.wake_threadsafe``, handing it the item directly. Because the item is handed over
under the lock, an item is never lost: if the coroutine is cancelled after it was chosen,
its cancel hook answers "too late", it receives the item, and the cancellation waits for
its next blocking point.

Fairness. A thread that must wait files a ``_ThreadWaiter`` (a condition of its own on the
same lock) in the same FIFO as the coroutines: the getters, who wait only while the queue
is empty, and the putters, with their items, who wait only while it is full. A put hands
its item to the first getter; a get that frees a slot puts the first putter's item and
wakes it. So whoever waited first is served first, thread or coroutine, and a stream of
coroutines cannot starve a thread. A new put or get waits behind those already waiting.

The invariant behind fairness: a putter waits only while there is no room. So whatever frees
room (a get, a getter that settles its item) admits putters, first come first served, while
there is room; one slot can admit several, since an item that goes straight to a plait
getter takes no slot.

asyncio tasks use the same ``_async`` methods: where no plait kernel runs in the thread but
an asyncio loop does, the waiter is an ``_AsyncioWaiter``, an asyncio future the waker
resolves through the loop's :class:`LoopInbox`. One difference follows asyncio's rules: an
asyncio task cancelled after it was chosen gives a gotten item back to the queue (asyncio
code expects a cancelled ``get`` to have taken nothing), where a plait task keeps it; a put
that was chosen has happened either way. A thread interrupted (Ctrl-C) after it was chosen
gives its item back too. So an item handed to an asyncio or thread getter keeps its slot
(``_reserved``) until the getter runs, as it would sit in a ``queue.Queue``: ``full()``
counts it, and an item given back goes to the head of the queue into that slot, never
beyond ``maxsize``.

A waiter that can never run again is passed over: ``wake`` answers False when an asyncio
waiter's loop was closed by hand, and the waker tries the next one, so a dead getter takes
no item and holds no slot, and a dead putter's item is not put (its put never returned). A
task destroyed with its closed loop withdraws, or gives back an item handed to it just
before the loop closed, if it can take the lock without waiting (see
``_AsyncioWaiter.wait``).

Names: the thread side is the standard ``queue.Queue``/``threading.Event`` API (``put``,
``get``, ``wait`` with ``block``/``timeout``, raising ``queue.Empty``/``queue.Full``); the
coroutine side is the same name with ``_async`` (``await q.get_async()``).
"""

from __future__ import annotations

import queue as _queue
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from . import traps
from .errors import NoKernelError

if TYPE_CHECKING:
    import asyncio  # imported where a loop is met: threads and plait tasks do without it

__all__ = ["LoopInbox", "UniversalEvent", "UniversalQueue"]


class _Waiter:
    """A plait task parked on a universal object: its kernel, its task, and its answer."""

    __slots__ = ("kernel", "task", "item", "chosen")
    reserves = False  # a gotten item is the task's once chosen: it holds no slot of the queue

    def __init__(self, kernel: Any, item: Any) -> None:
        self.kernel = kernel
        self.task = kernel.current
        self.item = item
        self.chosen = False

    def wake(self, value: Any = None) -> bool:
        self.chosen = True
        self.kernel.wake_threadsafe(self.task, self, value)
        return True

    def wait(
        self,
        waiting_for: str,
        lock: threading.Lock,
        withdraw: Callable[[], bool],
        settle: Callable[[Any, bool], None] | None = None,
    ) -> Awaitable[Any]:
        """Suspend until woken; the answer comes straight from the trap (no extra frame).

        ``lock`` and ``settle`` serve the asyncio waiter: a chosen plait task always keeps
        its answer."""
        return traps.suspend(waiting_for, self, withdraw)


class _ThreadWaiter:
    """A thread blocked in ``UniversalQueue.put``/``get``, filed in the same FIFO as the
    coroutines: woken alone, on a condition of its own over the queue's lock."""

    __slots__ = ("item", "chosen", "answer", "_cond")
    reserves = True  # a gotten item holds its slot until the thread runs (Ctrl-C gives it back)

    def __init__(self, lock: threading.Lock, item: Any = None) -> None:
        self.item = item
        self.chosen = False
        self.answer: Any = None
        self._cond = threading.Condition(lock)

    def wake(self, value: Any = None) -> bool:
        self.chosen = True
        self.answer = value
        self._cond.notify()
        return True

    def wait(self, waiters: deque, timeout: float | None) -> bool:
        """Under the lock: wait to be chosen; False (withdrawn) once ``timeout`` ran out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.chosen:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                waiters.remove(self)
                return False
            try:
                self._cond.wait(remaining)
            except BaseException:  # interrupted (Ctrl-C): gone from the queue's waiters
                if not self.chosen:
                    waiters.remove(self)
                raise
        return True


class LoopInbox:
    """Calls for one asyncio loop from any thread, at most one loop wake-up per batch.

    ``call(fn, arg)`` appends to a deque and, unless a drain is already due, schedules one
    with ``call_soon_threadsafe`` (``call_soon`` from the loop's own thread, which needs no
    wake-up). The drain clears the flag before it empties the deque, so a call appended
    meanwhile is either drained now or schedules the next drain. The inbox holds its loop
    weakly (it is the value of a weak-keyed table): a loop nobody uses any more goes.
    """

    __slots__ = ("_loop", "_calls", "_due", "_running_loop")
    _of: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        from asyncio import _get_running_loop

        self._loop = weakref.ref(loop)
        self._calls: deque = deque()
        self._due = False
        self._running_loop = _get_running_loop

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> LoopInbox:
        """The inbox of ``loop`` (one per loop, made on first use)."""
        inbox = cls._of.get(loop)
        if inbox is None:
            inbox = cls._of.setdefault(loop, cls(loop))
        return inbox

    def call(self, fn: Callable[[Any], Any], arg: Any) -> bool:
        """Run ``fn(arg)`` on the loop soon. Never blocks; False, and dropped, if the loop is
        closed or gone: nobody is left to run it.

        A loop closed by hand after this returned True drops the call unseen: ``close``
        discards what was scheduled.
        """
        loop = self._loop()
        # ask the loop, not ``_due``: a loop closed by hand with a drain due leaves the flag
        # up for good, and calls appended then would never run
        if loop is None or loop.is_closed():
            self._calls.clear()
            return False
        self._calls.append((fn, arg))
        if not self._due:
            self._due = True
            try:
                if self._running_loop() is loop:
                    loop.call_soon(self._drain)
                else:
                    loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # closed meanwhile, in its own thread
                self._calls.clear()
                self._due = False
                return False
        return True

    def resolve(self, future: asyncio.Future) -> bool:
        """Set the result of ``future`` (a future of the loop) to None soon, unless done;
        False if the loop is closed."""
        return self.call(_resolve, future)

    def _drain(self) -> None:
        self._due = False
        calls = self._calls
        while calls:
            fn, arg = calls.popleft()
            fn(arg)


class _AsyncioWaiter:
    """An asyncio task parked on a universal queue or event.

    ``wake`` runs under the object's lock in any thread: it records the answer and
    resolves the task's future through the loop's inbox, or answers False if the task can
    never run (its loop is closed, or it was destroyed). A gotten item stays the queue's
    until the task runs (``reserves``: it holds its slot): ``wait`` then settles it, kept,
    or, if the task was cancelled after it was chosen, given back, and lets the
    cancellation go: asyncio code expects a cancelled ``get`` to have taken nothing.
    """

    __slots__ = ("inbox", "future", "item", "answer", "chosen", "abandoned")
    reserves = True

    def __init__(self, loop: asyncio.AbstractEventLoop, item: Any) -> None:
        self.inbox = LoopInbox.of(loop)
        self.future = loop.create_future()
        self.item = item
        self.answer: Any = None
        self.chosen = False
        self.abandoned = False

    def wake(self, value: Any = None) -> bool:
        if self.abandoned:
            return False
        self.answer = value  # before the future resolves: the task reads it without the lock
        if not self.inbox.resolve(self.future):
            self.answer = None
            return False
        self.chosen = True
        return True

    async def wait(
        self,
        waiting_for: str,
        lock: threading.Lock,
        withdraw: Callable[[], bool],
        settle: Callable[[Any, bool], None] | None = None,
    ) -> Any:
        from asyncio import CancelledError

        try:
            await self.future
        except CancelledError:
            if not withdraw() and settle is not None:
                settle(self.answer, False)
            raise
        except GeneratorExit:
            # destroyed without running again (its loop was closed by hand), perhaps by the
            # garbage collector in the middle of a call on this very object in this thread:
            # so take the lock only if it is free; if not, ``wake`` passes this waiter over
            # (an item handed to it meanwhile is lost with it)
            self.abandoned = True
            if lock.acquire(blocking=False):
                lock.release()  # free: this thread is not inside a call on the object
                if not withdraw() and settle is not None:
                    settle(self.answer, False)
            raise
        if settle is not None:
            settle(self.answer, True)
        return self.answer


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


def _waiter(item: Any = None) -> Any:
    """A waiter for the task running in this thread: a plait task, else an asyncio task."""
    k = traps.state.kernel
    if k is not None:
        return _Waiter(k, item)
    aio = sys.modules.get("asyncio")  # never imported: no asyncio loop runs anywhere
    loop = None if aio is None else aio._get_running_loop()
    if loop is None:
        raise NoKernelError(
            "a universal object's *_async method was awaited with neither a plait kernel "
            "nor an asyncio loop running in this thread; threads call put/get/wait"
        )
    return _AsyncioWaiter(loop, item)


def _withdraw_locked(waiters: Any, waiter: Any) -> bool:
    """Under the lock: take a waiter that gives up out of ``waiters``; False if it was
    chosen already (its answer stands)."""
    if waiter.chosen:
        return False
    if waiter in waiters:  # else it was passed over as one that can never run
        waiters.remove(waiter)
    return True


def _check_timeout(timeout: float) -> None:
    if not timeout >= 0:  # NaN too: compared with anything, it is False
        raise ValueError("'timeout' must be a non-negative number")


class UniversalQueue:
    """A FIFO queue for threads (blocking ``put``/``get``) and coroutines (``await
    put_async``/``get_async``) at once. ``maxsize <= 0`` means unbounded.

    >>> import threading
    >>> from plait.coro import run
    >>> q = UniversalQueue()
    >>> t = threading.Thread(target=q.put, args=(42,)); t.start()
    >>> async def main():
    ...     return await q.get_async()  # the task waits; the kernel keeps running
    >>> run(main)
    42
    >>> t.join(5)
    """

    def __init__(self, maxsize: int = 0) -> None:
        self.maxsize = maxsize
        self._items: deque = deque()
        self._lock = threading.Lock()
        self._all_done = threading.Condition(self._lock)
        # waiting, threads and coroutines in one FIFO each: getters for an item, putters
        # (with their item) for room; getters wait only while the queue is empty, putters
        # only while it is full
        self._getters: deque = deque()
        self._putters: deque = deque()
        self._joiners: list[_Waiter] = []
        self._reserved = 0  # items handed to asyncio getters that have not run yet
        self._unfinished = 0

    def __repr__(self) -> str:
        return f"<UniversalQueue size={self.qsize()} maxsize={self.maxsize}>"

    def qsize(self) -> int:
        """Number of items now in the queue (not counting those handed to a waiting getter)."""
        return len(self._items)

    def empty(self) -> bool:
        """True if the queue holds no item now."""
        return not self._items

    def full(self) -> bool:
        """True if a ``put`` would wait now."""
        return not self._has_room()

    def statistics(self) -> dict[str, int]:
        """Counts for monitoring: items, unfinished items, threads and coroutines waiting."""
        with self._lock:
            return {
                "size": len(self._items),
                "maxsize": self.maxsize,
                "unfinished": self._unfinished,
                "getters_waiting": len(self._getters),
                "putters_waiting": len(self._putters),
            }

    # -- under the lock ----------------------------------------------------------------

    def _put_locked(self, item: Any) -> None:
        self._unfinished += 1
        if not self._hand_to_getter(item):
            self._items.append(item)

    def _hand_to_getter(self, item: Any) -> bool:
        """``item`` goes to the first waiting getter that can still run, which holds its
        slot if it ``reserves``; False if there is none."""
        while self._getters:
            getter = self._getters.popleft()
            if getter.wake(item):
                if getter.reserves:
                    self._reserved += 1
                return True
        return False

    def _get_locked(self) -> Any:
        item = self._items.popleft()
        self._admit_putters()
        return item

    def _admit_putters(self) -> None:
        """Room may have come free: putters wait only while there is none, so the first
        ones put, while there is room (an item a plait getter takes holds no slot)."""
        while self._putters and self._has_room():
            putter = self._putters.popleft()
            if putter.wake():  # else it can never run: its put does not happen
                self._put_locked(putter.item)

    def _settle(self, item: Any, kept: bool) -> None:
        with self._lock:
            self._settle_locked(item, kept)

    def _settle_locked(self, item: Any, kept: bool) -> None:
        """A getter that holds a slot for ``item`` ran: the slot comes free if it ``kept``
        the item; if it was cancelled or interrupted instead, the item goes to the next
        getter, else back to the head of the queue, in that slot: the queue never exceeds
        ``maxsize``."""
        self._reserved -= 1
        if not kept and not self._hand_to_getter(item):
            self._items.appendleft(item)
        self._admit_putters()

    def _has_room(self) -> bool:
        return self.maxsize <= 0 or len(self._items) + self._reserved < self.maxsize

    # -- the thread side ---------------------------------------------------------------

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Put ``item``; if full, block up to ``timeout`` s, then raise ``queue.Full``.

        Raises ``ValueError`` for a negative (or NaN) ``timeout`` when it could wait, as
        ``queue.Queue`` does: a put into an unbounded queue never waits.
        """
        if block and timeout is not None and self.maxsize > 0:
            _check_timeout(timeout)
        with self._lock:
            if self._has_room() and not self._putters:
                self._put_locked(item)
                return
            if not block:
                raise _queue.Full
            waiter = _ThreadWaiter(self._lock, item)
            self._putters.append(waiter)
            if not waiter.wait(self._putters, timeout):
                raise _queue.Full

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return an item; if empty, block up to ``timeout`` s, then raise
        ``queue.Empty``. Raises ``ValueError`` for a negative (or NaN) ``timeout``."""
        if block and timeout is not None:
            _check_timeout(timeout)
        with self._lock:
            if self._items:
                return self._get_locked()
            if not block:
                raise _queue.Empty
            waiter = _ThreadWaiter(self._lock)
            self._getters.append(waiter)
            try:
                if not waiter.wait(self._getters, timeout):
                    raise _queue.Empty
            except BaseException:
                if waiter.chosen:  # interrupted (Ctrl-C) once handed an item: not taken
                    self._settle_locked(waiter.answer, False)
                raise
            self._settle_locked(waiter.answer, True)
            return waiter.answer

    def put_nowait(self, item: Any) -> None:
        """Put without waiting; raises ``queue.Full``. Safe from threads and tasks."""
        self.put(item, block=False)

    def get_nowait(self) -> Any:
        """Get without waiting; raises ``queue.Empty``. Safe from threads and tasks."""
        return self.get(block=False)

    def task_done(self) -> None:
        """Mark one gotten item as processed; raises ``ValueError`` if called too often."""
        with self._lock:
            if self._unfinished <= 0:
                raise ValueError("task_done() called more times than there were items")
            self._unfinished -= 1
            if self._unfinished == 0:
                self._all_done.notify_all()
                for waiter in self._joiners:
                    waiter.wake()
                self._joiners.clear()

    def join(self, timeout: float | None = None) -> bool:
        """Block until every item put was marked ``task_done``; False if ``timeout`` ran out."""
        with self._lock:
            return self._all_done.wait_for(lambda: self._unfinished == 0, timeout)

    # -- the coroutine side ------------------------------------------------------------

    def _withdraw(self, waiters: Any, waiter: _Waiter) -> bool:
        with self._lock:
            return _withdraw_locked(waiters, waiter)

    async def get_async(self) -> Any:
        """Remove and return an item; blocks the task (not the kernel) while empty."""
        with self._lock:
            if self._items:
                return self._get_locked()
            waiter = _waiter()
            self._getters.append(waiter)
        return await waiter.wait(
            "UNIVERSAL_GET",
            self._lock,
            lambda: self._withdraw(self._getters, waiter),
            self._settle,
        )

    async def put_async(self, item: Any) -> None:
        """Put ``item``; blocks the task (not the kernel) while the queue is full."""
        with self._lock:
            if self._has_room() and not self._putters:
                self._put_locked(item)
                return
            waiter = _waiter(item)
            self._putters.append(waiter)
        await waiter.wait(
            "UNIVERSAL_PUT", self._lock, lambda: self._withdraw(self._putters, waiter)
        )

    async def join_async(self) -> None:
        """Block the task until every item put was marked ``task_done``."""
        with self._lock:
            if self._unfinished == 0:
                return
            waiter = _waiter()
            self._joiners.append(waiter)
        await waiter.wait(
            "UNIVERSAL_JOIN", self._lock, lambda: self._withdraw(self._joiners, waiter)
        )


class UniversalEvent:
    """An event for threads (``wait(timeout)``) and coroutines (``await wait_async()``)."""

    def __init__(self) -> None:
        self._flag = False
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._waiters: list[_Waiter] = []

    def __repr__(self) -> str:
        return f"<UniversalEvent {'set' if self._flag else 'unset'}>"

    def is_set(self) -> bool:
        """True once ``set`` was called (and not ``clear``-ed since)."""
        return self._flag

    def set(self) -> None:
        """Set the flag and wake every waiter, thread or task. Never blocks."""
        with self._lock:
            self._flag = True
            self._cond.notify_all()
            for waiter in self._waiters:
                waiter.wake()
            self._waiters.clear()

    def clear(self) -> None:
        """Reset the flag."""
        with self._lock:
            self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        """Block the thread until set; True, or False if ``timeout`` ran out.

        As with ``threading.Event``, a ``set`` while the thread waits wakes it with True
        even if ``clear`` follows before the thread runs.
        """
        with self._lock:
            if self._flag:
                return True
            return self._cond.wait(timeout)  # only ``set`` notifies

    def _withdraw(self, waiter: _Waiter) -> bool:
        with self._lock:
            return _withdraw_locked(self._waiters, waiter)

    async def wait_async(self) -> None:
        """Block the task (not the kernel) until the event is set."""
        with self._lock:
            if self._flag:
                return
            waiter = _waiter()
            self._waiters.append(waiter)
        await waiter.wait("UNIVERSAL_EVENT", self._lock, lambda: self._withdraw(waiter))
