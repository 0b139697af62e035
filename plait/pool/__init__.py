"""Pools of workers: ``Pool``, ``ThreadPool`` and their results, which never hang.

One concept per module:

- ``pool``: the public classes, argument checks;
- ``results``: jobs, which are also the results callers hold (``AsyncResult``,
  ``MapResult``, the ``imap`` iterators), chunking and adaptive chunk sizes;
- ``engine``: the job queue, pool states and statistics both engines share;
- ``scheduler``: the process engine, one thread that feeds the workers and handles
  their deaths and per-task deadlines (its docstring holds the crash state machine);
- ``backend``: the seam between the scheduler and a worker (local processes now);
- ``worker``: the loop a worker process runs and its message format;
- ``threadpool``: the thread engine;
- ``errors``: ``WorkerLostError``, ``TimeoutError``, ``MaybeEncodingError``, ...;
- ``progress``: the optional tqdm bar.
"""

from plait.pool.engine import PoolStats
from plait.pool.errors import (
    MaybeEncodingError,
    PoolTerminatedError,
    RemoteTraceback,
    TimeoutError,
    WorkerLostError,
)
from plait.pool.pool import Pool, ThreadPool
from plait.pool.results import (
    ApplyResult,
    AsyncResult,
    IMapIterator,
    IMapUnorderedIterator,
    MapResult,
)
from plait.process.context import BaseContext

__all__ = [
    "ApplyResult",
    "AsyncResult",
    "IMapIterator",
    "IMapUnorderedIterator",
    "MapResult",
    "MaybeEncodingError",
    "Pool",
    "PoolStats",
    "PoolTerminatedError",
    "RemoteTraceback",
    "ThreadPool",
    "TimeoutError",
    "WorkerLostError",
]

BaseContext.provide("Pool", Pool, context_keyword="context")  # ctx.Pool(2) runs on ctx
