"""Drop-in face of ``multiprocessing``: ``import plait.multiprocessing as multiprocessing``.

Re-exports only; the code and its explanation live in ``plait.process`` (processes,
start methods, contexts), ``plait.ipc`` (pipes, queues, locks, shared values, fd
passing), ``plait.pool`` and ``plait.managers``. Every public submodule of the standard
package has a face here (``context``, ``process``, ``queues``, ``synchronize``, ``util``,
``reduction``, ``dummy``, ...), imported when first named, as the attribute too
(``multiprocessing.util`` after ``import multiprocessing``).

Only the process layer is imported with the face; every other name imports its layer on
first use (PEP 562 ``__getattr__``), from the one table that contexts read too
(``plait.process.context.API_HOMES``), so ``import plait.multiprocessing`` costs about
what ``import multiprocessing`` does.
"""

from __future__ import annotations

from plait._core.lazy import lazy_names
from plait.process import (
    Process,
    active_children,
    cpu_count,
    current_process,
    get_all_start_methods,
    get_logger,
    get_start_method,
    log_to_stderr,
    parent_process,
    set_start_method,
)
from plait.process.api import API_HOMES as _API_HOMES
from plait.process.api import SUBMODULES as _SUBMODULES
from plait.process.log import SUBDEBUG as SUBDEBUG
from plait.process.log import SUBWARNING as SUBWARNING

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
    "allow_connection_pickling",
    "cpu_count",
    "current_process",
    "freeze_support",
    "get_all_start_methods",
    "get_context",
    "get_logger",
    "get_start_method",
    "log_to_stderr",
    "parent_process",
    "reducer",
    "set_executable",
    "set_forkserver_preload",
    "set_start_method",
]

_HOME = {
    **_API_HOMES,
    "TimeoutError": "plait._core.errors",
    "AuthenticationError": "plait._core.errors",
    "BufferTooShort": "plait._core.errors",
    "ProcessError": "plait._core.errors",
    # The context classes subclass the standard BaseContext, hence import multiprocessing:
    # a child that re-runs a script importing this face does not pay for it until used.
    **dict.fromkeys(
        ["freeze_support", "get_context", "set_executable", "set_forkserver_preload"],
        "plait.process.context",
    ),
    "allow_connection_pickling": "plait.ipc.reduction",
    "reducer": "plait.ipc.reduction",
}

__getattr__, __dir__ = lazy_names(__name__, _HOME, __all__, _SUBMODULES)
