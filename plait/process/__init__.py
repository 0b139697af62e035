"""The process layer: ``Process``, start methods, and the facts about processes.

What lives here, one module per concept:

- ``process``: the ``Process`` class, ``current_process``, ``parent_process``,
  ``active_children`` and the bootstrap a child runs;
- ``child``: the handle of a child this process created (pidfd sentinel, reaping);
- ``fork``, ``spawn``, ``forkserver``: the three start methods (``forkserver.stop_server``
  ends this process's fork server on demand);
- ``start``: the default start method (``set_start_method``) and the code that starts a
  child with each method;
- ``context``: ``get_context`` and the context objects, instances of the standard
  ``BaseContext`` (imported on first use: a lean child does not import ``multiprocessing``);
- ``lifeline``: how daemon children die with their parent, even after SIGKILL;
- ``cpu``: ``cpu_count`` (and ``process_cpu_count``) that honours affinity masks, cgroup
  quotas and ``-X cpu_count``;
- ``log``: ``get_logger`` and ``log_to_stderr``.

The interface is ``multiprocessing``'s, with its error classes and messages; the
differences are documented where they are (``cpu_count``, daemon children after the
parent is killed, ``__main__`` functions of interactive sessions under spawn).
This package imports only ``plait._core`` and the standard library; a child pays for
the start method that made it and nothing else.
"""

from plait._core.lazy import lazy_names
from plait._core.system import check_processes as _check_processes
from plait.process.cpu import cpu_count, process_cpu_count
from plait.process.log import get_logger, log_to_stderr
from plait.process.process import Process, active_children, current_process, parent_process
from plait.process.start import get_all_start_methods, get_start_method, set_start_method

_check_processes()  # a system without pidfds or memfds gets one clear error (see there)

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
    "process_cpu_count",
    "set_executable",
    "set_forkserver_preload",
    "set_start_method",
]


# The context objects subclass the standard BaseContext, so their module imports
# ``multiprocessing``: loaded on first use (PEP 562), which a lean child never makes.
_CONTEXT_NAMES = (
    "BaseContext",
    "freeze_support",
    "get_context",
    "set_executable",
    "set_forkserver_preload",
)
_HOME = dict.fromkeys(_CONTEXT_NAMES, "plait.process.context")
__getattr__, __dir__ = lazy_names(__name__, _HOME, __all__)
