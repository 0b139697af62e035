"""Drop-in face of ``multiprocessing.dummy``: the ``multiprocessing`` API on threads.

Re-exports only; the code and its explanation live in ``plait/threads/dummy.py``
(``Process`` is a thread, ``Value``, ``Array``, ``Namespace``, ``Manager``) and
``plait/threads/dummy_connection.py`` (``Pipe``). ``Pool(...)`` makes a
``plait.pool.ThreadPool``, imported on the first call, as the standard ``dummy.Pool``
imports ``multiprocessing.pool`` when called.
"""

from __future__ import annotations

from plait.multiprocessing.dummy import connection  # noqa: F401 - the submodule
from plait.threads.dummy import (  # noqa: F401 - some are public outside __all__, as there
    Array,
    DummyManager,
    DummyProcess,
    JoinableQueue,
    Manager,
    Namespace,
    Pool,
    Process,
    Value,
    active_children,
    current_process,
    freeze_support,
    shutdown,
)
from plait.threads.dummy_connection import Pipe
from plait.threads.queues import Queue
from plait.threads.sync import (
    Barrier,
    BoundedSemaphore,
    Condition,
    Event,
    Lock,
    RLock,
    Semaphore,
)

# The standard module's list, so ``from multiprocessing.dummy import *`` binds the same
# names; ``Value``, ``Array``, ``Namespace``, ``DummyProcess``, ``shutdown`` and
# ``connection`` are attributes outside it, as there.
__all__ = [
    "Process",
    "current_process",
    "active_children",
    "freeze_support",
    "Lock",
    "RLock",
    "Semaphore",
    "BoundedSemaphore",
    "Condition",
    "Event",
    "Barrier",
    "Queue",
    "Manager",
    "Pipe",
    "Pool",
    "JoinableQueue",
]

# As in the standard module: the manager's dict and list are the builtins.
dict = dict
list = list
