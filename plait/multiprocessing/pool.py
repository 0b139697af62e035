"""Drop-in face of ``multiprocessing.pool``; the code lives in ``plait.pool``.

Every public name of the standard module: the pools and their results, the errors
(``TimeoutError`` is ``multiprocessing.TimeoutError``, which also catches the pool's own
``TimeoutError``), the states ``INIT``/``RUN``/``CLOSE``/``TERMINATE``, ``job_counter``,
the calling helpers ``mapstar``/``starmapstar``, ``ExceptionWithTraceback`` and
``rebuild_exc`` (how a worker's exception travels with its traceback). ``worker``, the
standard pool's process loop, has no meaning on plait's engine: calling it raises an
error that says so.
"""

from plait._core.errors import TimeoutError
from plait.ipc import wait
from plait.pool import (
    ApplyResult,
    AsyncResult,
    IMapIterator,
    IMapUnorderedIterator,
    MapResult,
    MaybeEncodingError,
    Pool,
    RemoteTraceback,
    ThreadPool,
)
from plait.pool.engine import CLOSE, INIT, RUN, TERMINATE
from plait.pool.results import job_counter
from plait.pool.worker import ExceptionWithTraceback, mapstar, rebuild_exc, starmapstar, worker
from plait.process import get_context

__all__ = [
    "CLOSE",
    "INIT",
    "RUN",
    "TERMINATE",
    "ApplyResult",
    "AsyncResult",
    "ExceptionWithTraceback",
    "IMapIterator",
    "IMapUnorderedIterator",
    "MapResult",
    "MaybeEncodingError",
    "Pool",
    "RemoteTraceback",
    "ThreadPool",
    "TimeoutError",
    "get_context",
    "job_counter",
    "mapstar",
    "rebuild_exc",
    "starmapstar",
    "wait",
    "worker",
]
