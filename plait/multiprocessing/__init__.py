"""Drop-in face of ``multiprocessing``: ``import plait.multiprocessing as multiprocessing``.

Re-exports only; the code and its explanation live in ``plait.process`` (processes,
start methods, contexts) and ``plait.ipc`` (pipes, connections). Names of the standard
module that plait does not offer yet (queues, locks, shared values) are
absent rather than borrowed from the standard library, so a program that needs them
fails at once with an ``AttributeError`` naming them.
"""

from plait._core.errors import TimeoutError
from plait.ipc import AuthenticationError, BufferTooShort, Pipe, ProcessError
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
    "AuthenticationError",
    "BufferTooShort",
    "Manager",
    "Pipe",
    "Pool",
    "Process",
    "ProcessError",
    "TimeoutError",
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
