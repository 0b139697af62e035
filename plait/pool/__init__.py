"""Pools of workers: ``Pool``, ``ThreadPool`` and their results, which never hang.

One concept per module:

- ``pool``: the public classes, argument checks;
- ``jobs``: the engine's jobs, chunking and adaptive chunk sizes, outcomes;
- ``results``: what callers hold (``AsyncResult``, ``MapResult``, the ``imap``
  iterators), views of the jobs, and the checks of the calls' arguments;
- ``engine``: the job queue, pool states and statistics both engines share;
- ``scheduler``: the process engine, one thread that feeds the workers and handles
  their deaths and per-task deadlines (its docstring holds the crash state machine);
- ``backend``: the seam between the scheduler and a worker (local processes now);
- ``worker``: the loop a worker process runs and its message format;
- ``threadpool``: the thread engine;
- ``errors``: ``WorkerLostError``, ``TimeoutError``, ``MaybeEncodingError``, ...;
- ``progress``: the optional tqdm bar.
"""

from __future__ import annotations

from plait._core.lazy import lazy_names

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
    "SoftTimeoutError",
    "ThreadPool",
    "TimeoutError",
    "WorkerLostError",
]

# Each name is imported from its module on first use: a worker process (spawn,
# forkserver) imports ``plait.pool.worker``, hence this package, and needs none of the
# scheduler's modules (~25 ms of imports it would pay at every start).
_HOME = {
    "ApplyResult": "plait.pool.results",
    "AsyncResult": "plait.pool.results",
    "IMapIterator": "plait.pool.results",
    "IMapUnorderedIterator": "plait.pool.results",
    "MapResult": "plait.pool.results",
    "MaybeEncodingError": "plait.pool.errors",
    "Pool": "plait.pool.pool",
    "PoolStats": "plait.pool.engine",
    "PoolTerminatedError": "plait.pool.errors",
    "RemoteTraceback": "plait.pool.errors",
    "SoftTimeoutError": "plait.pool.errors",
    "ThreadPool": "plait.pool.pool",
    "TimeoutError": "plait.pool.errors",
    "WorkerLostError": "plait.pool.errors",
}


__getattr__, __dir__ = lazy_names(__name__, _HOME, __all__)
