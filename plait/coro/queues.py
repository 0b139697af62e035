"""Queues between tasks of one kernel: Queue (FIFO), LifoQueue, PriorityQueue.

The shape of CPython's ``queue.Queue`` (``put``/``get``, ``*_nowait``, ``task_done``/
``join``, ``qsize``/``empty``/``full``) with awaiting in place of blocking, and the
standard ``queue.Empty``/``queue.Full`` from the ``*_nowait`` calls, so ``except
queue.Empty:`` keeps working. ``get`` on an empty queue parks the task in ``_getters``;
``put`` hands its item straight to the first parked getter (the item never touches the
buffer, and a getter that was chosen keeps its item even if cancelled meanwhile).
``put`` on a full queue parks in ``_putters``; each ``get`` wakes one, which retries.

Blocking points: ``get``, ``put`` (only when full), ``join``. For queues shared with
threads see ``UniversalQueue``.
"""

from __future__ import annotations

import heapq
import queue as _queue
from collections import deque
from typing import Any

from . import traps

__all__ = ["LifoQueue", "PriorityQueue", "Queue"]


class Queue:
    """A FIFO queue for tasks; ``maxsize <= 0`` means unbounded."""

    def __init__(self, maxsize: int = 0) -> None:
        self.maxsize = maxsize
        self._init()
        self._getters: deque = deque()
        self._putters: deque = deque()
        self._joiners: deque = deque()
        self._unfinished = 0

    def _init(self) -> None:
        self._items: Any = deque()

    def _push(self, item: Any) -> None:
        self._items.append(item)

    def _pop(self) -> Any:
        return self._items.popleft()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} size={self.qsize()} maxsize={self.maxsize}>"

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._items)

    def put_nowait(self, item: Any) -> None:
        """Put ``item`` or raise ``queue.Full``. Never blocks."""
        if self.full():
            raise _queue.Full
        self._unfinished += 1
        if self._getters:
            traps.kernel().wake(self._getters.popleft(), item)
        else:
            self._push(item)

    def get_nowait(self) -> Any:
        """Remove and return an item or raise ``queue.Empty``. Never blocks."""
        if not self._items:
            raise _queue.Empty
        item = self._pop()
        if self._putters:
            traps.kernel().wake(self._putters.popleft(), None)
        return item

    async def put(self, item: Any) -> None:
        """Put ``item``; blocks while the queue is full."""
        while self.full():
            await traps.park(self._putters, "QUEUE_PUT")
        self.put_nowait(item)

    async def get(self) -> Any:
        """Remove and return an item; blocks while the queue is empty."""
        if self._items:
            return self.get_nowait()
        return await traps.park(self._getters, "QUEUE_GET")

    def task_done(self) -> None:
        """Mark one gotten item as processed; ``ValueError`` if called too often."""
        if self._unfinished <= 0:
            raise ValueError("task_done() called more times than there were items")
        self._unfinished -= 1
        if self._unfinished == 0 and self._joiners:
            k = traps.kernel()
            while self._joiners:
                k.wake(self._joiners.popleft(), None)

    async def join(self) -> None:
        """Block until every item put was marked ``task_done``."""
        while self._unfinished:
            await traps.park(self._joiners, "QUEUE_JOIN")

    def statistics(self) -> dict[str, Any]:
        return {
            "size": self.qsize(),
            "maxsize": self.maxsize,
            "getters_waiting": len(self._getters),
            "putters_waiting": len(self._putters),
            "unfinished": self._unfinished,
        }


class LifoQueue(Queue):
    """A last-in, first-out queue for tasks."""

    def _init(self) -> None:
        self._items = []

    def _pop(self) -> Any:
        return self._items.pop()


class PriorityQueue(Queue):
    """A queue that returns the smallest item first (``heapq`` order)."""

    def _init(self) -> None:
        self._items = []

    def _push(self, item: Any) -> None:
        heapq.heappush(self._items, item)

    def _pop(self) -> Any:
        return heapq.heappop(self._items)
