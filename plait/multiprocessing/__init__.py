"""Drop-in face of ``multiprocessing``: ``import plait.multiprocessing as multiprocessing``.

Re-exports only; the code and its explanation live in ``plait.process`` (processes,
start methods, contexts), ``plait.ipc`` (pipes, queues, locks, shared values),
``plait.pool`` and ``plait.managers``. Importing those layers also offers their
constructors on every context (``get_context("spawn").Queue()``). The standard names
plait does not offer (``allow_connection_pickling``, ``reducer``) are absent rather than
borrowed from the standard library, so a program that needs them fails at once with an
``AttributeError`` naming them.
"""

from plait._core.errors import TimeoutError
from plait.ipc import (
    Array,
    AuthenticationError,
    Barrier,
    BoundedSemaphore,
    BufferTooShort,
    Condition,
    Event,
    JoinableQueue,
    Lock,
    Pipe,
    ProcessError,
    Queue,
    RawArray,
    RawValue,
    RLock,
    Semaphore,
    SimpleQueue,
    Value,
)
from plait.managers import Manager
from plait.pool import Pool
from plait.process import (
    Process,
    active_children,
    cpu_count,
    current_process,
    freeze_support,
    get_all_start_methods,
    get_context,
    get_logger,
    get_start_method,
    log_to_stderr,
    parent_process,
    set_executable,
    set_forkserver_preload,
    set_start_method,
)

__all__ = [
    "Array",
    "AuthenticationError",
    "Barrier",
    "BoundedSemaphore",
    "BufferTooShort",
    "Condition",
    "Event",
    "JoinableQueue",
    "Lock",
    "Manager",
    "Pipe",
    "Pool",
    "Process",
    "ProcessError",
    "Queue",
    "RLock",
    "RawArray",
    "RawValue",
    "Semaphore",
    "SimpleQueue",
    "TimeoutError",
    "Value",
    "active_children",
    "cpu_count",
    "current_process",
    "freeze_support",
    "get_all_start_methods",
    "get_context",
    "get_logger",
    "get_start_method",
    "log_to_stderr",
    "parent_process",
    "set_executable",
    "set_forkserver_preload",
    "set_start_method",
]
