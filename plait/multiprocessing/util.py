"""Drop-in face of ``multiprocessing.util``; the code lives in ``plait.process.hooks``
(finalizers, after-fork callbacks, the temporary directory) and ``plait.process.log``.

Beyond ``__all__`` it offers the names programs and test suites reach for: the logging
levels, ``_run_finalizers``, ``_exit_function``, the registries and ``_cleanup_tests``.
"""

import sys

from plait.process import child, hooks, process
from plait.process.hooks import (
    Finalize,
    ForkAwareLocal,
    ForkAwareThreadLock,
    close_all_fds_except,
    get_temp_dir,
    is_exiting,
    register_after_fork,
)
from plait.process.hooks import close_fds as close_fds
from plait.process.log import DEBUG as DEBUG
from plait.process.log import DEFAULT_LOGGING_FORMAT as DEFAULT_LOGGING_FORMAT
from plait.process.log import INFO as INFO
from plait.process.log import LOGGER_NAME as LOGGER_NAME
from plait.process.log import NOTSET as NOTSET
from plait.process.log import (
    SUBDEBUG,
    SUBWARNING,
    debug,
    get_logger,
    info,
    log_to_stderr,
    sub_debug,
    sub_warning,
)

__all__ = [
    "sub_debug",
    "debug",
    "info",
    "sub_warning",
    "get_logger",
    "log_to_stderr",
    "get_temp_dir",
    "register_after_fork",
    "is_exiting",
    "Finalize",
    "ForkAwareThreadLock",
    "ForkAwareLocal",
    "close_all_fds_except",
    "SUBDEBUG",
    "SUBWARNING",
]

# Linux names Unix sockets in an abstract namespace too; plait's Listener takes them.
abstract_sockets_supported = sys.platform == "linux"

_afterfork_registry = hooks._afterfork_registry
_finalizer_registry = hooks._finalizer_registry
_run_after_forkers = hooks.run_after_forkers
_run_finalizers = hooks.run_finalizers
_cleanup_tests = hooks.cleanup
_exit_function = process._exit_function
_flush_std_streams = child.flush_std_streams
