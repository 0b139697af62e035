"""Queues between threads: FIFO, LIFO, priority and simple, with shutdown.

Theory of operation
-------------------
The work is done in C, by ``plait._core._queue`` (read the comment at the top of
``_queue.c``): with the storage's own methods pre-bound, an operation runs start to end
under the GIL, takes no lock of its own and runs no Python code, so it cannot be seen
half-done and cannot convoy; blocking sleeps on a per-thread waiter released by the thread
that makes progress possible. This module gives the engine its standard face.

The storage hooks of ``queue.Queue`` keep their meaning: ``_init(maxsize)`` creates
``self.queue``, ``_qsize()``, ``_put(item)`` and ``_get()`` operate on it. Each class says
in ``_hook_mode`` whether its hooks are the stock deque ("fifo") or list ("lifo") ones, which
the engine replaces by the storage's bound ``append``/``popleft``/``pop``. A subclass whose
hooks (wherever in its bases they come from) are not one of those two stock sets gets
``_hook_mode = None`` (set in ``__init_subclass__``), and the engine then calls the hooks
as Python methods under a lock of its own, as the standard library does.
``PriorityQueue`` always runs that way: ``heappush`` compares items, which can run Python
code.

``q.mutex`` is the queue's lock, as in the standard library (``with q.mutex:
q.queue.clear()``); the first time a program asks for it, the engine starts taking that
lock on every operation, so what is done while holding it is safe.

``_PySimpleQueue`` is ``SimpleQueue`` written in Python under the standard's private name:
a deque and a ``Semaphore`` counting its items (``put`` appends then releases, ``get``
acquires then pops). It is slower than the C engine, and reentrant only as far as its
semaphore is: it is for reading and for comparing, not for signal handlers or ``__del__``.

Differences from ``queue.Queue``, all additive except the last: ``join(timeout=None)``
takes a timeout and returns whether every task was done; ``statistics()`` tells who is
waiting; ``ShutDown`` and ``shutdown()`` exist on every supported Python (on 3.13+
``ShutDown`` is ``queue.ShutDown`` itself); the conditions ``not_empty``, ``not_full`` and
``all_tasks_done`` do not exist: the engine's waiters are not Conditions.
"""

from __future__ import annotations

import heapq
from collections import deque
from types import GenericAlias
from typing import Any

from plait._core import _queue
from plait.threads.sync import Semaphore

__all__ = ["Queue", "LifoQueue", "PriorityQueue", "SimpleQueue", "Empty", "Full", "ShutDown"]

Empty = _queue.Empty
Full = _queue.Full
ShutDown = _queue.ShutDown


class Queue(_queue.QueueCore):
    """A first-in first-out queue between threads, bounded by ``maxsize`` if > 0.

    ``put`` blocks while the queue is full, ``get`` while it is empty; each takes
    ``block`` and ``timeout``. Every item put counts as an unfinished task until a
    consumer calls ``task_done()``; ``join(timeout=None)`` waits for all of them and
    returns ``True``, or ``False`` once ``timeout`` seconds have passed.

    >>> q = Queue()
    >>> q.put(1)
    >>> q.get(timeout=1)
    1
    >>> q.task_done()
    >>> q.join(timeout=5)  # every item put is done: it returns at once
    True

    Methods (implemented in C, documented here):

    - ``put(item, block=True, timeout=None)``: add an item. Blocks while the queue is full
      (``maxsize > 0``), up to ``timeout`` seconds; raises ``Full`` if it still is (at once
      when ``block`` is false), ``ShutDown`` if the queue is shut down, ``ValueError`` for a
      negative timeout.
    - ``get(block=True, timeout=None)``: remove and return an item. Blocks while the queue
      is empty, up to ``timeout`` seconds; raises ``Empty`` if it still is, ``ShutDown``
      if the queue is shut down and empty, ``ValueError`` for a negative timeout.
    - ``put_nowait(item)``, ``get_nowait()``: ``put``/``get`` with ``block=False``.
    - ``qsize()``, ``empty()``, ``full()``: snapshots; never block.
    - ``task_done()``: one item got earlier is processed; ``ValueError`` when called more
      often than items were put.
    - ``join(timeout=None)``: block until every item put was marked done, or ``timeout``
      seconds pass; returns True if all were done.
    - ``shutdown(immediate=False)``: from now on ``put`` raises ``ShutDown`` and ``get``
      raises it once the queue is empty; blocked callers wake up. ``immediate`` also drops
      the items left (counting them as done), so ``get`` raises at once and ``join``
      returns.
    - ``statistics()``: a snapshot dict (``qsize``, ``maxsize``, ``unfinished_tasks``,
      ``getters_waiting``, ``putters_waiting``, ``joiners_waiting``, ``is_shutdown``).
    """

    _hook_mode: str | None = "fifo"
    __class_getitem__ = classmethod(GenericAlias)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._hook_mode = _STOCK_HOOKS.get(_hooks_of(cls))

    def __repr__(self) -> str:
        state = " shut down" if self.is_shutdown else ""
        return (
            f"<{type(self).__module__}.{type(self).__qualname__} object at {id(self):#x}"
            f" maxsize={self.maxsize} unfinished_tasks={self.unfinished_tasks}{state}>"
        )

    def _init(self, maxsize: int) -> None:
        self.queue = deque()

    def _qsize(self) -> int:
        return len(self.queue)

    def _put(self, item: Any) -> None:
        self.queue.append(item)

    def _get(self) -> Any:
        return self.queue.popleft()


def _hooks_of(cls: type) -> tuple[Any, ...]:
    return tuple(getattr(cls, name) for name in ("_init", "_qsize", "_put", "_get"))


# The hook sets the engine knows how to replace by the storage's own bound methods.
_STOCK_HOOKS = {_hooks_of(Queue): "fifo"}


class LifoQueue(Queue):
    """A last-in first-out queue (a stack): ``get`` returns the newest item."""

    def _init(self, maxsize: int) -> None:
        self.queue = []

    def _qsize(self) -> int:
        return len(self.queue)

    def _put(self, item: Any) -> None:
        self.queue.append(item)

    def _get(self) -> Any:
        return self.queue.pop()


_STOCK_HOOKS[_hooks_of(LifoQueue)] = "lifo"
LifoQueue._hook_mode = "lifo"  # registered after __init_subclass__ ran for it


class PriorityQueue(Queue):
    """A queue that returns the smallest item first (entries are often ``(priority, data)``)."""

    def _init(self, maxsize: int) -> None:
        self.queue = []

    def _qsize(self) -> int:
        return len(self.queue)

    def _put(self, item: Any) -> None:
        heapq.heappush(self.queue, item)

    def _get(self) -> Any:
        return heapq.heappop(self.queue)


class SimpleQueue(_queue.SimpleQueueCore):
    """An unbounded FIFO queue without task tracking: ``put`` never blocks.

    ``put(item, block=True, timeout=None)`` (``block`` and ``timeout`` are ignored, for
    compatibility), ``get(block=True, timeout=None)`` blocks while empty and raises
    ``Empty`` after ``timeout``; ``put_nowait``, ``get_nowait``, ``qsize``, ``empty``,
    ``statistics()`` (as ``Queue.statistics``).
    """

    __class_getitem__ = classmethod(GenericAlias)


class _PySimpleQueue:
    """``SimpleQueue`` in Python: an unbounded FIFO queue, ``put`` never blocks.

    ``get(block=True, timeout=None)`` blocks while the queue is empty, up to ``timeout``
    seconds, then raises ``Empty`` (at once when ``block`` is false, whatever ``timeout``
    says); a negative timeout raises ``ValueError``.
    """

    def __init__(self) -> None:
        self._queue: deque[Any] = deque()
        self._count = Semaphore(0)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add an item; never blocks (``block`` and ``timeout`` exist for compatibility)."""
        self._queue.append(item)
        self._count.release()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the oldest item, waiting as the class docstring says."""
        if timeout is not None and timeout < 0:
            raise ValueError(f"'timeout' must be a non-negative number, got {timeout!r}")
        if not self._count.acquire(block, timeout if block else None):
            raise Empty
        return self._queue.popleft()

    def put_nowait(self, item: Any) -> None:
        """``put(item, block=False)``."""
        self.put(item, block=False)

    def get_nowait(self) -> Any:
        """``get(block=False)``: an item, or ``Empty`` at once."""
        return self.get(False)

    def empty(self) -> bool:
        """Whether the queue is empty now (a snapshot). Never blocks."""
        return not self._queue

    def qsize(self) -> int:
        """The number of items now (a snapshot). Never blocks."""
        return len(self._queue)

    __class_getitem__ = classmethod(GenericAlias)


# The public home of these names is the face: reprs, pickles by reference and documentation
# name ``plait.queue``, as the standard's name ``queue``.
for _public in (Queue, LifoQueue, PriorityQueue, SimpleQueue, _PySimpleQueue):
    _public.__module__ = "plait.queue"
del _public
