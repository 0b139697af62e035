"""Threads, the primitives that synchronize them, thread queues, and a lock-order checker.

The layer of ``plait`` for work inside one process. It stands on the interpreter (OS
threads and C locks come from ``_thread``/``threading``) and on ``plait._core`` (the C
queue engine), and on nothing else of plait:

- ``thread``: ``Thread`` (a ``threading.Thread`` whose ``result()`` returns the value or
  re-raises the exception of its target), ``Timer``, the interpreter's thread functions;
- ``sync``: ``Lock``, ``RLock``, ``Condition``, ``Semaphore``, ``BoundedSemaphore``,
  ``Event``, ``Barrier``;
- ``waiting``: the algorithms of ``Condition`` and ``Barrier``, written once over a lock
  protocol and a waiter store, for these primitives and for those shared between
  processes (``plait.ipc.synchronize``);
- ``queues``: ``Queue``, ``LifoQueue``, ``PriorityQueue``, ``SimpleQueue`` with
  ``shutdown()``;
- ``dummy`` and ``dummy_connection``: the ``multiprocessing`` API on threads
  (``multiprocessing.dummy``: a thread as ``Process``, ``Pipe``/``Listener``/``Client``
  between threads);
- ``lockorder``: the opt-in checker that reports a lock-order cycle (a potential
  deadlock) the first time it becomes possible;
- ``interpreter``: the interpreter's thread state (``excepthook``, the thread registry)
  and ``ThreadingModule``, the module type that makes the face's names live views of it.

``plait.threading`` and ``plait.queue`` re-export these under the standard names, which is
where the public classes say they live (``__module__``), as ``threading`` and ``queue``.

Each name is imported from its module on first use: ``plait.ipc.synchronize`` imports
``waiting`` in every process that receives a lock, and must not pay for the lock-order
checker (``dataclasses``, ``traceback``) or the thread queues.
"""

from __future__ import annotations

from plait._core.lazy import lazy_names

__all__ = [
    "Thread",
    "Timer",
    "Lock",
    "RLock",
    "Condition",
    "Semaphore",
    "BoundedSemaphore",
    "Event",
    "Barrier",
    "BrokenBarrierError",
    "ThreadError",
    "Queue",
    "LifoQueue",
    "PriorityQueue",
    "SimpleQueue",
    "Empty",
    "Full",
    "ShutDown",
    "check_lock_order",
    "lock_order_checking",
    "lock_order_reports",
    "CheckedLock",
    "LockOrderViolation",
    "LockOrderWarning",
]


_HOME = {
    "Thread": "plait.threads.thread",
    "Timer": "plait.threads.thread",
    "Lock": "plait.threads.sync",
    "RLock": "plait.threads.sync",
    "Condition": "plait.threads.sync",
    "Semaphore": "plait.threads.sync",
    "BoundedSemaphore": "plait.threads.sync",
    "Event": "plait.threads.sync",
    "Barrier": "plait.threads.sync",
    "BrokenBarrierError": "plait.threads.sync",
    "ThreadError": "plait.threads.sync",
    "Queue": "plait.threads.queues",
    "LifoQueue": "plait.threads.queues",
    "PriorityQueue": "plait.threads.queues",
    "SimpleQueue": "plait.threads.queues",
    "Empty": "plait.threads.queues",
    "Full": "plait.threads.queues",
    "ShutDown": "plait.threads.queues",
    "check_lock_order": "plait.threads.lockorder",
    "lock_order_checking": "plait.threads.lockorder",
    "lock_order_reports": "plait.threads.lockorder",
    "CheckedLock": "plait.threads.lockorder",
    "LockOrderViolation": "plait.threads.lockorder",
    "LockOrderWarning": "plait.threads.lockorder",
}

_SUBMODULES = (
    "dummy",
    "dummy_connection",
    "interpreter",
    "lockorder",
    "queues",
    "sync",
    "thread",
    "waiting",
)

__getattr__, __dir__ = lazy_names(__name__, _HOME, __all__, _SUBMODULES)
