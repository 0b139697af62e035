"""Drop-in face of ``queue``: the standard names, from ``plait.threads.queues``.

``from plait import queue`` in place of ``import queue``. Re-exports only; the code and
its explanation are in ``plait/threads/queues.py`` and ``plait/_core/_queue.c``.
"""

from plait.threads.queues import (  # noqa: F401 (_PySimpleQueue: the standard private name)
    Empty,
    Full,
    LifoQueue,
    PriorityQueue,
    Queue,
    ShutDown,
    SimpleQueue,
    _PySimpleQueue,
)

__all__ = ["Queue", "LifoQueue", "PriorityQueue", "SimpleQueue", "Empty", "Full", "ShutDown"]
