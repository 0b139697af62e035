"""The process layer: ``Process``, start methods, and the facts about processes.

What lives here, one module per concept:

- ``process``: the ``Process`` class, ``current_process``, ``parent_process``,
  ``active_children`` and the bootstrap a child runs;
- ``child``: the handle of a child this process created (pidfd sentinel, reaping);
- ``fork``, ``spawn``, ``forkserver``: the three start methods (``forkserver.stop_server``
  ends this process's fork server on demand);
- ``context``: ``get_context``, ``set_start_method`` and the default start method;
- ``lifeline``: how daemon children die with their parent, even after SIGKILL;
- ``cpu``: ``cpu_count`` that honours affinity masks and cgroup quotas;
- ``log``: ``get_logger`` and ``log_to_stderr``.

The interface is ``multiprocessing``'s, with its error classes and messages; the
differences are documented where they are (``cpu_count``, daemon children after the
parent is killed, ``__main__`` functions of interactive sessions under spawn).
This package imports only ``plait._core`` and the standard library; a child pays for
the start method that made it and nothing else.
"""

from plait.process.context import (
    BaseContext,
    freeze_support,
    get_all_start_methods,
    get_context,
    get_start_method,
    set_executable,
    set_forkserver_preload,
    set_start_method,
)
from plait.process.cpu import cpu_count
from plait.process.log import get_logger, log_to_stderr
from plait.process.process import Process, active_children, current_process, parent_process

__all__ = [
    "BaseContext",
    "Process",
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
