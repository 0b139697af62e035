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

asyncio tasks use the same ``_async`` methods: where no plait kernel runs in the thread but
an asyncio loop does, the waiter is an ``_AsyncioWaiter``, an asyncio future the waker
resolves through the loop's :class:`LoopInbox`. One difference follows asyncio's rules: an
asyncio task cancelled after it was chosen gives a gotten item back to the queue (asyncio
code expects a cancelled ``get`` to have taken nothing), where a plait task keeps it; a put
that was chosen has happened either way. So an item handed to an asyncio getter keeps its
slot (``_reserved``) until the task runs: ``full()`` counts it, and an item given back goes
to the head of the queue into that slot, never beyond ``maxsize``.

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

    def wake(self, value: Any = None) -> None:
        self.chosen = True
        self.kernel.wake_threadsafe(self.task, self, value)

    def wait(
        self,
        waiting_for: str,
        withdraw: Callable[[], bool],
        settle: Callable[[Any, bool], None] | None = None,
    ) -> Awaitable[Any]:
        """Suspend until woken; the answer comes straight from the trap (no extra frame)."""
        return traps.suspend(waiting_for, self, withdraw)


class _ThreadWaiter:
    """A thread blocked in ``UniversalQueue.put``/``get``, filed in the same FIFO as the
    coroutines: woken alone, on a condition of its own over the queue's lock."""

    __slots__ = ("item", "chosen", "answer", "_cond")
    reserves = False

    def __init__(self, lock: threading.Lock, item: Any = None) -> None:
        self.item = item
        self.chosen = False
        self.answer: Any = None
        self._cond = threading.Condition(lock)

    def wake(self, value: Any = None) -> None:
        self.chosen = True
        self.answer = value
        self._cond.notify()

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

    def call(self, fn: Callable[[Any], Any], arg: Any) -> None:
        """Run ``fn(arg)`` on the loop soon. Never blocks; dropped if the loop is closed."""
        self._calls.append((fn, arg))
        if not self._due:
            loop = self._loop()
            if loop is None:
                self._calls.clear()  # the loop is gone: nobody is left to answer
                return
            self._due = True
            try:
                if self._running_loop() is loop:
                    loop.call_soon(self._drain)
                else:
                    loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: nobody is left to answer
                self._calls.clear()
                self._due = False

    def resolve(self, future: asyncio.Future) -> None:
        """Set the result of ``future`` (a future of the loop) to None soon, unless done."""
        self.call(_resolve, future)

    def _drain(self) -> None:
        self._due = False
        calls = self._calls
        while calls:
            fn, arg = calls.popleft()
            fn(arg)


class _AsyncioWaiter:
    """An asyncio task parked on a universal queue or event.

    ``wake`` runs under the object's lock in any thread: it records the answer and
    resolves the task's future through the loop's inbox. A gotten item stays the queue's
    until the task runs (``reserves``: it holds its slot): ``wait`` then settles it, kept,
    or, if the task was cancelled after it was chosen, given back, and lets the
    cancellation go: asyncio code expects a cancelled ``get`` to have taken nothing.
    """

    __slots__ = ("inbox", "future", "item", "answer", "chosen")
    reserves = True

    def __init__(self, loop: asyncio.AbstractEventLoop, item: Any) -> None:
        self.inbox = LoopInbox.of(loop)
        self.future = loop.create_future()
        self.item = item
        self.answer: Any = None
        self.chosen = False

    def wake(self, value: Any = None) -> None:
        self.chosen = True
        self.answer = value
        self.inbox.resolve(self.future)

    async def wait(
        self,
        waiting_for: str,
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
        if self._getters:
            self._hand_to_getter(item)
        else:
            self._items.append(item)

    def _hand_to_getter(self, item: Any) -> None:
        """``item`` goes to the first waiting getter; an asyncio getter holds its slot."""
        getter = self._getters.popleft()
        if getter.reserves:
            self._reserved += 1
        getter.wake(item)

    def _get_locked(self) -> Any:
        item = self._items.popleft()
        if self._putters:
            self._admit_putter()
        return item

    def _admit_putter(self) -> None:
        """A slot came free and putters wait (the queue was full): the first one puts."""
        putter = self._putters.popleft()
        self._put_locked(putter.item)
        putter.wake()

    def _settle(self, item: Any, kept: bool) -> None:
        """An asyncio getter chosen for ``item`` ran: its slot comes free if it ``kept`` the
        item; if it was cancelled instead, the item goes to the next getter, else back to
        the head of the queue, in the slot it held: the queue never exceeds ``maxsize``."""
        with self._lock:
            self._reserved -= 1
            if not kept:
                self._give_back(item)
            elif self._putters and self._has_room():
                self._admit_putter()

    def _give_back(self, item: Any) -> None:
        """A getter did not take ``item`` after all: the next getter gets it, else it goes
        back to the head of the queue."""
        if self._getters:
            self._hand_to_getter(item)
        else:
            self._items.appendleft(item)

    def _has_room(self) -> bool:
        return self.maxsize <= 0 or len(self._items) + self._reserved < self.maxsize

    # -- the thread side ---------------------------------------------------------------

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Put ``item``; if full, block up to ``timeout`` s, then raise ``queue.Full``."""
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
        ``queue.Empty``."""
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
                    self._give_back(waiter.answer)
                raise
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
            if waiter.chosen:
                return False
            waiters.remove(waiter)
            return True

    async def get_async(self) -> Any:
        """Remove and return an item; blocks the task (not the kernel) while empty."""
        with self._lock:
            if self._items:
                return self._get_locked()
            waiter = _waiter()
            self._getters.append(waiter)
        return await waiter.wait(
            "UNIVERSAL_GET", lambda: self._withdraw(self._getters, waiter), self._settle
        )

    async def put_async(self, item: Any) -> None:
        """Put ``item``; blocks the task (not the kernel) while the queue is full."""
        with self._lock:
            if self._has_room() and not self._putters:
                self._put_locked(item)
                return
            waiter = _waiter(item)
            self._putters.append(waiter)
        await waiter.wait("UNIVERSAL_PUT", lambda: self._withdraw(self._putters, waiter))

    async def join_async(self) -> None:
        """Block the task until every item put was marked ``task_done``."""
        with self._lock:
            if self._unfinished == 0:
                return
            waiter = _waiter()
            self._joiners.append(waiter)
        await waiter.wait("UNIVERSAL_JOIN", lambda: self._withdraw(self._joiners, waiter))


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
        """Block the thread until set; return the flag (False if ``timeout`` ran out)."""
        with self._lock:
            return self._cond.wait_for(lambda: self._flag, timeout)

    def _withdraw(self, waiter: _Waiter) -> bool:
        with self._lock:
            if waiter.chosen:
                return False
            self._waiters.remove(waiter)
            return True

    async def wait_async(self) -> None:
        """Block the task (not the kernel) until the event is set."""
        with self._lock:
            if self._flag:
                return
            waiter = _waiter()
            self._waiters.append(waiter)
        await waiter.wait("UNIVERSAL_EVENT", lambda: self._withdraw(waiter))
