"""Threads, the primitives that synchronize them, thread queues, and a lock-order checker.

The layer of ``plait`` for work inside one process. It stands on the interpreter (OS
threads and C locks come from ``_thread``/``threading``) and on ``plait._core`` (the C
queue engine), and on nothing else of plait:

- ``thread``: ``Thread`` (a ``threading.Thread`` whose ``result()`` returns the value or
  re-raises the exception of its target), ``Timer``, the interpreter's thread functions;
- ``sync``: ``Lock``, ``RLock``, ``Condition``, ``Semaphore``, ``BoundedSemaphore``,
  ``Event``, ``Barrier``;
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
"""

from plait.threads.lockorder import (
    CheckedLock,
    LockOrderViolation,
    LockOrderWarning,
    check_lock_order,
    lock_order_checking,
    lock_order_reports,
)
from plait.threads.queues import (
    Empty,
    Full,
    LifoQueue,
    PriorityQueue,
    Queue,
    ShutDown,
    SimpleQueue,
)
from plait.threads.sync import (
    Barrier,
    BoundedSemaphore,
    BrokenBarrierError,
    Condition,
    Event,
    Lock,
    RLock,
    Semaphore,
    ThreadError,
)
from plait.threads.thread import Thread, Timer

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
