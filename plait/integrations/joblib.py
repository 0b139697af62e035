"""joblib on plait: ``Parallel(backend="plait")`` runs its batches on a plait ``Pool``.

>>> import plait.integrations.joblib  # registers the backend "plait"
>>> from joblib import Parallel, delayed, parallel_config
>>> Parallel(n_jobs=2, backend="plait")(delayed(abs)(x) for x in range(-3, 1))
[3, 2, 1, 0]
>>> with parallel_config(backend="plait", n_jobs=2):  # for code that calls Parallel itself
...     Parallel()(delayed(pow)(2, k) for k in range(4))
[1, 2, 4, 8]
>>> plait.integrations.joblib.shutdown()  # the pool kept between calls (see below)

Importing this module registers the backend (``register()`` does it again, with
``make_default=True`` if asked). The import of joblib is this module's only cost.

How joblib's contract maps onto the pool
----------------------------------------
joblib groups calls into batches (its auto-batching: the batch grows until one takes
about 0.2 s) and hands each batch to ``submit(batch, callback)`` as one callable. The
backend pickles the batch with cloudpickle, as loky does, so that functions and classes
of ``__main__`` travel by value: a notebook's function defined after the kept pool
started its workers reaches them too (large buffers still go out of band). It runs the
batch with ``Pool.apply_async``; the pool's result thread calls joblib's
callback with ``(True, value)`` or ``(False, exception)``, and ``retrieve_result_callback``
turns that back into the value or the raise. The tag, rather than the bare value, keeps a
batch that *returns* an exception object from being taken for one that raised it.

- ``Parallel(timeout=t)`` becomes the pool's per-task timeout of each batch: at ``t`` the
  worker is killed and replaced, so the batch really stops (joblib's other backends only
  stop waiting for it), and joblib raises ``TimeoutError`` as it does elsewhere. The
  error is plait's ``plait.pool.TimeoutError``, which is ``multiprocessing.TimeoutError``
  and the builtin one, so the ``except`` clauses written for joblib still match.
- A worker that dies (SIGKILL, a segfault, ``os._exit``) fails its batch with plait's
  ``WorkerLostError`` (pid and signal included); the pool replaces the worker, and
  joblib's abort path retires the pool, so the next ``Parallel`` call starts fresh.
- The pool is kept between ``Parallel`` calls with the same worker count, as joblib's
  default loky backend keeps its executor: a loop of small ``Parallel`` calls does not
  start workers each time. It is terminated at process exit (plait children included),
  or once a call that aborted, or that needed other arguments, retired it and no
  other call still runs on it: concurrent calls from several threads share it safely.
- ``parallel_config(inner_max_num_threads=n)`` sets the BLAS/OpenMP thread variables
  of each worker to ``n`` (the pool's ``worker_env``); without it the pool caps them at
  each worker's share of the CPUs, as loky does.
- A nested ``Parallel(backend="plait")`` inside a task starts a pool of the worker's
  own (workers may have children); other nested calls go to joblib's threading backend.
"""

from __future__ import annotations

import os
import pickle
import threading
from typing import Any

import cloudpickle
from joblib import parallel as _parallel
from joblib._parallel_backends import (
    AutoBatchingMixin,
    FallbackToBackend,
    ParallelBackendBase,
    SequentialBackend,
)

from plait.pool import Pool
from plait.pool.engine import RUN
from plait.process import current_process
from plait.process.cpu import cpu_count
from plait.process.hooks import Finalize

__all__ = ["PlaitBackend", "current_pool", "register", "shutdown"]

BACKEND_NAME = "plait"

# What joblib passes every backend for its memmapping of large arrays, which plait does
# not need: its pool ships arrays as pickle-5 buffers.
_JOBLIB_OWN = frozenset({"max_nbytes", "mmap_mode", "temp_folder", "verbose"})
_PROTOCOL = 5


class PlaitBackend(AutoBatchingMixin, ParallelBackendBase):
    """joblib's ``ParallelBackendBase`` on a plait ``Pool`` (see the module docstring).

    Keyword arguments given to ``Parallel``/``parallel_config`` beyond joblib's own go
    to the ``Pool``: ``initializer``, ``initargs``, ``maxtasksperchild``, ``context``.
    """

    supports_retrieve_callback = True
    supports_timeout = True
    supports_inner_max_num_threads = True
    default_n_jobs = -1

    def __init__(self, nesting_level: int | None = None, **pool_kwargs: Any) -> None:
        super().__init__(nesting_level=nesting_level, **pool_kwargs)
        self._pool: Pool | None = None

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None or current_process().daemon:
            return 1  # a daemonic worker may not start processes (joblib's own rule)
        if n_jobs < 0:
            return max(cpu_count() + 1 + n_jobs, 1)
        return n_jobs

    def configure(
        self,
        n_jobs: int = 1,
        parallel: Any = None,
        prefer: str | None = None,
        require: str | None = None,
        **pool_kwargs: Any,
    ) -> int:
        n_jobs = self.effective_n_jobs(n_jobs)
        if n_jobs == 1:
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        pool_kwargs = {
            name: value
            for name, value in {**self.backend_kwargs, **pool_kwargs}.items()
            if name not in _JOBLIB_OWN
        }
        if self.inner_max_num_threads is not None:
            # parallel_config(inner_max_num_threads=n): each worker's BLAS/OpenMP threads.
            threads = str(self.inner_max_num_threads)
            caps = {variable: threads for variable in self.MAX_NUM_THREADS_VARS}
            pool_kwargs["worker_env"] = {**caps, **pool_kwargs.get("worker_env", {})}
        self._pool = _acquire(n_jobs, pool_kwargs)
        self.parallel = parallel
        return n_jobs

    def submit(self, func: Any, callback: Any = None) -> Any:
        timeout = getattr(self.parallel, "timeout", None)
        buffers: list[pickle.PickleBuffer] = []
        payload = cloudpickle.dumps(func, _PROTOCOL, buffer_callback=buffers.append)
        tagged = {}
        if callback is not None:
            tagged = {
                "callback": lambda value: callback((True, value)),
                "error_callback": lambda error: callback((False, error)),
            }
        return self._pool.apply_async(_run_batch, (payload, *buffers), timeout=timeout, **tagged)

    def retrieve_result_callback(self, out: tuple[bool, Any]) -> Any:
        succeeded, value = out
        if succeeded:
            return value
        raise value

    def terminate(self) -> None:
        _release(self._pool)  # kept for the next call (see _acquire)
        self._pool = None
        self.reset_batch_stats()

    def abort_everything(self, ensure_ready: bool = True) -> None:
        _release(self._pool, retire=True)
        self._pool = None
        if ensure_ready:
            self.configure(
                n_jobs=self.parallel.n_jobs,
                parallel=self.parallel,
                **self.parallel._backend_kwargs,
            )


def _run_batch(payload: bytes, *buffers: Any) -> Any:
    """In a worker: rebuild the batch joblib made (see the module docstring) and run it."""
    return pickle.loads(payload, buffers=buffers)()


# The pool kept between Parallel calls: one at a time, for one worker count and one set
# of pool arguments. Each call holds it from configure() to terminate(); a call that
# needs other arguments, or that aborts, retires it (the next call starts a new one),
# and a retired pool is terminated once no call holds it, so one call's abort never
# kills another's tasks. A forked child (a pool worker running a nested Parallel) starts
# with none: the parent's pools are not its own.
_lock = threading.Lock()
_kept: list[tuple[tuple, Pool]] = []  # (key, pool), at most one
_holders: dict[Pool, int] = {}  # each pool a call holds -> how many calls hold it


def _forget_after_fork() -> None:
    global _lock
    _lock = threading.Lock()
    _kept.clear()
    _holders.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def _acquire(n_jobs: int, pool_kwargs: dict[str, Any]) -> Pool:
    key = (n_jobs, sorted(pool_kwargs.items(), key=lambda item: item[0]))
    retired = None
    with _lock:
        if _kept and (_kept[0][0] != key or _kept[0][1]._state != RUN):
            retired = _kept.pop()[1]
            if retired in _holders:
                retired = None  # its last holder terminates it
        if not _kept:
            _kept.append((key, Pool(n_jobs, **pool_kwargs)))
        pool = _kept[0][1]
        _holders[pool] = _holders.get(pool, 0) + 1
    if retired is not None:
        retired.terminate()
    return pool


def _release(pool: Pool | None, retire: bool = False) -> None:
    """A call is done with ``pool``; ``retire``: no call may take it again."""
    if pool is None:
        return
    with _lock:
        if retire and _kept and _kept[0][1] is pool:
            _kept.clear()
        held = _holders.get(pool, 0) - 1
        if held > 0:
            _holders[pool] = held
            return
        _holders.pop(pool, None)
        if _kept and _kept[0][1] is pool:
            return  # kept for the next call
    pool.terminate()


def current_pool() -> Pool | None:
    """The pool that ``Parallel(backend="plait")`` runs on now, kept between calls; None
    before the first call and after ``shutdown()``."""
    with _lock:
        return _kept[0][1] if _kept else None


def shutdown() -> None:
    """Terminate the kept pool and every pool a call still holds (the next call starts a
    new one); also done when the process exits, a plait child included."""
    with _lock:
        pools = {pool for _, pool in _kept} | set(_holders)
        _kept.clear()
        _holders.clear()
    for pool in pools:
        pool.terminate()


# Finalize rather than atexit: a plait child leaves by os._exit after its finalizers.
Finalize(None, shutdown, exitpriority=15)


def register(make_default: bool = False) -> None:
    """Register ``PlaitBackend`` with joblib as ``"plait"`` (importing this module already
    did); with ``make_default=True`` it serves every ``Parallel`` that names no backend."""
    _parallel.register_parallel_backend(BACKEND_NAME, PlaitBackend, make_default=make_default)


register()
