"""Types of this package for checkers: the names its ``__getattr__`` loads on first use
(see ``__init__.py``), imported from where they live; ``tests/test_typing.py`` checks
that this list and the package agree."""

from plait._core.errors import AuthenticationError as AuthenticationError
from plait._core.errors import BufferTooShort as BufferTooShort
from plait._core.errors import ProcessError as ProcessError
from plait._core.errors import TimeoutError as TimeoutError
from plait.ipc.connection import Pipe as Pipe
from plait.ipc.queues import JoinableQueue as JoinableQueue
from plait.ipc.queues import Queue as Queue
from plait.ipc.queues import SimpleQueue as SimpleQueue
from plait.ipc.reduction import allow_connection_pickling as allow_connection_pickling
from plait.ipc.reduction import reducer as reducer
from plait.ipc.sharedctypes import Array as Array
from plait.ipc.sharedctypes import RawArray as RawArray
from plait.ipc.sharedctypes import RawValue as RawValue
from plait.ipc.sharedctypes import Value as Value
from plait.ipc.synchronize import Barrier as Barrier
from plait.ipc.synchronize import BoundedSemaphore as BoundedSemaphore
from plait.ipc.synchronize import Condition as Condition
from plait.ipc.synchronize import Event as Event
from plait.ipc.synchronize import Lock as Lock
from plait.ipc.synchronize import RLock as RLock
from plait.ipc.synchronize import Semaphore as Semaphore
from plait.managers import Manager as Manager
from plait.multiprocessing import connection as connection
from plait.multiprocessing import context as context
from plait.multiprocessing import dummy as dummy
from plait.multiprocessing import forkserver as forkserver
from plait.multiprocessing import heap as heap
from plait.multiprocessing import managers as managers
from plait.multiprocessing import pool as pool
from plait.multiprocessing import popen_fork as popen_fork
from plait.multiprocessing import popen_forkserver as popen_forkserver
from plait.multiprocessing import popen_spawn_posix as popen_spawn_posix
from plait.multiprocessing import popen_spawn_win32 as popen_spawn_win32
from plait.multiprocessing import process as process
from plait.multiprocessing import queues as queues
from plait.multiprocessing import reduction as reduction
from plait.multiprocessing import resource_sharer as resource_sharer
from plait.multiprocessing import resource_tracker as resource_tracker
from plait.multiprocessing import shared_memory as shared_memory
from plait.multiprocessing import sharedctypes as sharedctypes
from plait.multiprocessing import spawn as spawn
from plait.multiprocessing import synchronize as synchronize
from plait.multiprocessing import util as util
from plait.pool.pool import Pool as Pool
from plait.process import Process as Process
from plait.process import active_children as active_children
from plait.process import cpu_count as cpu_count
from plait.process import current_process as current_process
from plait.process import get_all_start_methods as get_all_start_methods
from plait.process import get_logger as get_logger
from plait.process import get_start_method as get_start_method
from plait.process import log_to_stderr as log_to_stderr
from plait.process import parent_process as parent_process
from plait.process import set_start_method as set_start_method
from plait.process.context import freeze_support as freeze_support
from plait.process.context import get_context as get_context
from plait.process.context import set_executable as set_executable
from plait.process.context import set_forkserver_preload as set_forkserver_preload

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
