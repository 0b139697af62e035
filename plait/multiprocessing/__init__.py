"""Drop-in face of ``multiprocessing``: ``import plait.multiprocessing as multiprocessing``.

Re-exports only; the code and its explanation live in ``plait.process`` (processes,
start methods, contexts), ``plait.ipc`` (pipes, queues, locks, shared values),
``plait.pool`` and ``plait.managers``. Only the process layer is imported with the face;
the names of the others import their layer on first use (PEP 562 ``__getattr__``), on the
module and on every context (``get_context("spawn").Queue()``), so ``import
plait.multiprocessing`` costs about what ``import multiprocessing`` does. The standard names
plait does not offer (``allow_connection_pickling``, ``reducer``) are absent rather than
borrowed from the standard library, so a program that needs them fails at once with an
``AttributeError`` naming them.
"""

from __future__ import annotations

from plait._core.lazy import lazy_names
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
from plait.process.context import BaseContext

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


# Name -> the module it comes from, imported on first use (PEP 562): ``import
# plait.multiprocessing`` costs what the process layer costs, as ``import
# multiprocessing`` does not import its pool or managers either. Every name of
# ``__all__`` not imported above and not named here comes from ``plait.ipc``.
_HOME = {
    "TimeoutError": "plait._core.errors",
    "AuthenticationError": "plait._core.errors",
    "BufferTooShort": "plait._core.errors",
    "ProcessError": "plait._core.errors",
    "Manager": "plait.managers",
    "Pool": "plait.pool.pool",
}
_HOME.update((name, "plait.ipc") for name in __all__ if name not in _HOME and name not in globals())
for _name, _home in _HOME.items():
    if _home != "plait._core.errors":
        BaseContext.provide_on_import(_home, [_name])  # ctx.Queue() imports plait.ipc
del _name, _home


__getattr__, __dir__ = lazy_names(__name__, _HOME, __all__)
