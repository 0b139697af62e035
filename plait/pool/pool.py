"""``Pool`` and ``ThreadPool``: the ``multiprocessing.pool`` interface on plait's engines.

The classes here check arguments, serialize the function once per call, make the job
(``jobs``) and hand it to an engine: ``scheduler.ProcessEngine`` for ``Pool``,
``threadpool.ThreadEngine`` for ``ThreadPool``, and return the caller's result
(``results``), a view of the job. Everything that waits, waits on a job.

Past the standard interface, all keyword-only: ``timeout=`` on ``apply``/``apply_async``
and on the map-style calls is a *per-task* limit (the worker is killed and replaced, the
task fails with ``TimeoutError``), or ``(soft, hard)``: at ``soft`` seconds
``SoftTimeoutError`` is raised inside the task, which may catch it and return, at
``hard`` the worker is killed (see ``worker`` for C code that never checks signals);
``progress=True`` on map-style calls shows a tqdm bar when tqdm is installed;
``chunksize=None`` (also the default of ``imap``) sizes chunks from measured task times;
``join(timeout)``; ``stats()``.

Misuse raises what ``multiprocessing.pool`` raises: ``ValueError("Pool not running")``
after ``close``/``terminate``, ``ValueError("Number of processes must be at least 1")``,
``TypeError`` for a non-callable task or initializer.
"""

from __future__ import annotations

import atexit
import operator
import os
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from plait._core import serialization
from plait.pool import progress as _progress
from plait.pool.backend import ProcessBackend
from plait.pool.engine import CLOSE, INIT, RUN, TERMINATE, PoolStats
from plait.pool.jobs import ApplyJob, FutureJob, IMapJob, MapJob
from plait.pool.memory import format_bytes, parse_memory
from plait.pool.results import (
    ApplyResult,
    IMapIterator,
    IMapUnorderedIterator,
    MapResult,
    TaskTimeout,
    check_buffersize,
    check_task_timeout,
    check_timeout,
    check_wait_timeout,
)
from plait.pool.scheduler import ProcessEngine
from plait.pool.threadpool import ThreadEngine
from plait.pool.worker import CPU_SHARE_ENV
from plait.process import cpu_count

__all__ = ["Pool", "ThreadPool"]

_live_engines: weakref.WeakSet = weakref.WeakSet()
_MEMORY_REPORT_SECONDS = 10.0  # the longest wait for a fresh worker's resident set
_atexit_registered = False


def _terminate_live_pools() -> None:
    """At exit: terminate pools still running, before the process layer reaps children."""
    for engine in list(_live_engines):
        engine.terminate()
        engine.join(5.0)


def _register(engine) -> None:
    # Registered after the first workers started, so it runs before the process
    # layer's exit hook (atexit runs hooks in reverse order).
    global _atexit_registered
    _live_engines.add(engine)
    if not _atexit_registered:
        atexit.register(_terminate_live_pools)
        _atexit_registered = True


def default_processes() -> int:
    """The size of a pool made without ``processes``: ``cpu_count()``, or in a pool's
    worker its share of it (``cpu_count() // workers`` of the outer pool, at least 1,
    which the worker keeps in the environment variable ``PLAIT_CPU_SHARE``)."""
    share = os.environ.get(CPU_SHARE_ENV)
    if share is None:
        return cpu_count()
    if not share.isdigit() or int(share) < 1:
        raise ValueError(f"{CPU_SHARE_ENV} must be a positive integer, not {share!r}")
    return int(share)


# Set beside the thread variables by a pool's cap: their value was plait's, not the user's.
THREAD_CAP_ENV = "PLAIT_THREAD_CAP"
# The variables BLAS and OpenMP libraries read for their thread count.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def worker_environment(
    worker_env: Mapping[str, str] | None, cap_threads: bool, threads: int
) -> tuple[dict, int | None]:
    """The environment a pool's workers get, and the thread cap of their BLAS pools.

    ``worker_env`` as given (strings only: ``TypeError`` naming the entry otherwise), and
    with ``cap_threads`` every one of ``THREAD_VARIABLES`` at ``threads``, so that workers
    x threads stays within the CPUs, unless ``worker_env`` or this process's environment
    sets one of them: that is the user's choice, and the cap steps back entirely. Values
    an outer pool's cap set in this process (a pool inside a worker; ``THREAD_CAP_ENV``
    names them) are not a choice: the cap is computed again for this pool's share.
    """
    env = {}
    for key, value in (worker_env or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                f"worker_env takes strings: {key!r}: {value!r} ({type(value).__name__})"
            )
        env[key] = value
    if not cap_threads:
        return env, None
    inherited = os.environ.get(THREAD_CAP_ENV)
    if any(v in env or (v in os.environ and os.environ[v] != inherited) for v in THREAD_VARIABLES):
        return env, None
    env.update(dict.fromkeys(THREAD_VARIABLES, str(threads)))
    env[THREAD_CAP_ENV] = str(threads)
    return env, threads


def _check_callable(func: Any, what: str = "func") -> None:
    if not callable(func):
        raise TypeError(f"{what} must be callable, not {type(func).__name__} {func!r}")


def _check_chunksize(chunksize: Any) -> int | None:
    if chunksize is None:
        return None
    chunksize = operator.index(chunksize)
    if chunksize < 1:
        raise ValueError(f"Chunksize must be 1+, not {chunksize}")
    return chunksize


class Pool:
    """A pool of worker processes that never hangs on a dead worker.

    ``Pool(processes=None, initializer=None, initargs=(), maxtasksperchild=None,
    context=None)``: ``processes`` defaults to ``cpu_count()`` (in a pool's worker, its
    share: see ``default_processes``); ``initializer(*initargs)``
    runs in each worker when it starts; a worker is replaced after
    ``maxtasksperchild`` tasks (a chunk of a map-style call is one task, as in the
    standard pool); ``context`` chooses the start method.
    ``backend="dask"``/``"ray"`` with ``address=`` (and ``backend_options=``) runs the
    same jobs on a cluster instead (``plait.pool.backends``). ``worker_env={...}`` is set
    in each worker's environment; ``cap_threads=True`` caps the BLAS/OpenMP threads of
    each worker to its share of the CPUs (``worker_environment``; ``False`` turns it off).
    ``max_memory_per_child`` (bytes, or ``"2GB"``) replaces a worker whose resident set
    is over it after a task, and kills one far over it during a task (``memory``).
    With ``idle_timeout`` (seconds) a worker idle that long exits, and the pool starts
    workers again when work comes.

    >>> with Pool(2) as pool:
    ...     pool.map(lambda x: x * x, range(10), timeout=5)
    [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]
    """

    _thread_workers = False
    _state = INIT  # the standard pool's bookkeeping name, for programs that read it
    _warn_unclosed = True  # see __del__

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: int | None = None,
        context: Any = None,
        *,
        backend: str = "local",
        address: Any = None,
        backend_options: Mapping[str, Any] | None = None,
        worker_env: Mapping[str, str] | None = None,
        cap_threads: bool = True,
        max_memory_per_child: int | str | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        if initializer is not None:
            _check_callable(initializer, "initializer")
        if backend != "local" or address is not None or backend_options is not None:
            if worker_env is not None or max_memory_per_child is not None or idle_timeout:
                raise ValueError(
                    "worker_env=, max_memory_per_child= and idle_timeout= need local worker "
                    "processes, not a cluster"
                )
            self._engine = self._cluster_engine(
                backend,
                address,
                processes,
                initializer,
                tuple(initargs),
                maxtasksperchild,
                context,
                backend_options,
            )
            self._processes = self._engine.workers_wanted
            _register(self._engine)
            weakref.finalize(self, self._engine.terminate)
            self._state = RUN
            return
        if processes is None:
            processes = default_processes()
        processes = operator.index(processes)
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if maxtasksperchild is not None:
            if (
                not isinstance(maxtasksperchild, int)
                or isinstance(maxtasksperchild, bool)
                or maxtasksperchild <= 0
            ):
                raise ValueError("maxtasksperchild must be a positive int or None")
        self._processes = processes
        self._worker_env = (worker_env, cap_threads)
        self._memory_limit = (
            None if max_memory_per_child is None else parse_memory(max_memory_per_child)
        )
        self._idle_timeout = check_timeout(idle_timeout, "idle_timeout")
        self._engine = self._make_engine(
            processes, initializer, tuple(initargs), maxtasksperchild, context
        )
        if self._memory_limit is not None:
            self._check_memory_limit()
        _register(self._engine)
        weakref.finalize(self, self._engine.terminate)
        self._state = RUN

    @staticmethod
    def Process(ctx: Any, *args: Any, **kwds: Any) -> Any:
        """Make one worker process with ``ctx``: ``ctx.Process(*args, **kwds)``.

        The standard pool's hook: a subclass may override it to make its workers.
        """
        return ctx.Process(*args, **kwds)

    def _make_engine(self, processes, initializer, initargs, maxtasks, context):
        share = max(1, default_processes() // processes)
        env, thread_cap = worker_environment(*self._worker_env, share)
        limit = self._memory_limit
        backend = ProcessBackend(
            context,
            initializer,
            initargs,
            maxtasks,
            type(self).Process,
            share,
            env,
            thread_cap,
            limit,
        )
        return ProcessEngine(backend, processes, maxtasks, limit, self._idle_timeout)

    def _check_memory_limit(self) -> None:
        """Refuse a memory limit below what a fresh worker uses (it would replace every
        worker after every task). Waits for the first worker's report, a few seconds at
        most."""
        engine = self._engine
        engine.fresh_reported.wait(_MEMORY_REPORT_SECONDS)
        fresh, limit = engine.fresh_rss, self._memory_limit
        if fresh is not None and fresh >= limit:
            self.terminate()
            raise ValueError(
                f"max_memory_per_child={format_bytes(limit)} is below what a fresh worker "
                f"uses ({format_bytes(fresh)} resident): every worker would be replaced "
                "after every task"
            )

    def _cluster_engine(self, backend, address, *args):
        if backend == "local":
            raise ValueError("address= and backend_options= need a cluster backend=")
        # Imported here: the cluster packages are optional (see plait.pool.backends).
        from plait.pool.backends import make_engine  # noqa: PLC0415

        return make_engine(backend, address, *args)

    def _func(self, func: Any) -> bytes:
        _check_callable(func)
        if self._thread_workers:
            return b""
        return serialization.dumps(func)

    # -- single calls ---------------------------------------------------------------

    def apply(
        self,
        func: Callable[..., Any],
        args: Iterable[Any] = (),
        kwds: Mapping[str, Any] | None = None,
        *,
        timeout: float | tuple | None = None,
    ) -> Any:
        """Call ``func(*args, **kwds)`` in a worker and return its result (blocks).

        Raises the task's exception, ``TimeoutError`` past the per-task ``timeout``,
        ``WorkerLostError`` if the worker died.
        """
        return self.apply_async(func, args, kwds, timeout=timeout).get()

    def apply_async(
        self,
        func: Callable[..., Any],
        args: Iterable[Any] = (),
        kwds: Mapping[str, Any] | None = None,
        callback: Callable[[Any], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        *,
        timeout: float | tuple | None = None,
    ) -> ApplyResult:
        """Start ``func(*args, **kwds)`` in a worker; return its ``AsyncResult`` at once.

        ``callback``/``error_callback`` run in the pool's thread with the result or the
        exception, outside the pool's lock, one at a time in the order results came; the
        result is ready once its callback has returned. Raises ``ValueError`` if the
        pool is not running.
        """
        self._engine.check_running()
        timeout = check_task_timeout(timeout)
        self._check_timeout_supported(timeout)
        if kwds is None:
            kwds = {}
        job = ApplyJob(
            self._engine, self._func(func), func, args, kwds, callback, error_callback, timeout
        )
        self._engine.submit(job)
        return ApplyResult(job)

    # -- map-style calls ------------------------------------------------------------

    def map(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        *,
        timeout: float | tuple | None = None,
        progress: bool = False,
    ) -> list:
        """``list(map(func, iterable))`` computed by the workers (blocks until all done).

        Raises the first failed task's exception (the others are not waited for).
        """
        return self._map_async(
            func, iterable, False, chunksize, None, None, timeout, progress
        ).get()

    def starmap(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        *,
        timeout: float | tuple | None = None,
        progress: bool = False,
    ) -> list:
        """Like ``map`` with each item unpacked as the arguments: ``func(*item)``."""
        return self._map_async(func, iterable, True, chunksize, None, None, timeout, progress).get()

    def map_async(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        callback=None,
        error_callback=None,
        *,
        timeout: float | tuple | None = None,
        progress: bool = False,
    ) -> MapResult:
        """Start ``map``; return a ``MapResult`` at once (the input is read now)."""
        return self._map_async(
            func, iterable, False, chunksize, callback, error_callback, timeout, progress
        )

    def starmap_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        callback=None,
        error_callback=None,
        *,
        timeout: float | tuple | None = None,
        progress: bool = False,
    ) -> MapResult:
        """Start ``starmap``; return a ``MapResult`` at once (the input is read now)."""
        return self._map_async(
            func, iterable, True, chunksize, callback, error_callback, timeout, progress
        )

    def _map_async(
        self, func, iterable, star, chunksize, callback, error_callback, timeout, progress
    ) -> MapResult:
        self._engine.check_running()
        chunksize = _check_chunksize(chunksize)
        timeout = check_task_timeout(timeout)
        self._check_timeout_supported(timeout)
        func_bytes = self._func(func)
        # A range stays a range: its chunks are ranges, which pickle in O(1).
        items = iterable if type(iterable) is range else list(iterable)
        job = MapJob(
            self._engine,
            func_bytes,
            func,
            items,
            star,
            chunksize,
            callback,
            error_callback,
            timeout,
        )
        if progress:
            job.progress = _progress.bar(len(items))
        self._engine.submit(job)
        return MapResult(job)

    def imap(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        buffersize: int | None = None,
        *,
        timeout: float | tuple | None = None,
        progress: bool = False,
    ) -> IMapIterator:
        """An iterator over ``func(x)`` for each ``x``, in input order, reading input lazily.

        ``buffersize`` bounds the tasks read from the input but not yet yielded (chunks
        of ``chunksize``; None: plait's own window). ``next(timeout)`` on it raises
        ``TimeoutError`` when the next result is late.
        """
        return self._imap(IMapIterator, func, iterable, chunksize, timeout, progress, buffersize)

    def imap_unordered(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        buffersize: int | None = None,
        *,
        timeout: float | tuple | None = None,
        progress: bool = False,
    ) -> IMapUnorderedIterator:
        """Like ``imap``, yielding results in the order they complete."""
        return self._imap(
            IMapUnorderedIterator, func, iterable, chunksize, timeout, progress, buffersize
        )

    def _imap(self, cls, func, iterable, chunksize, timeout, progress, buffersize=None, star=False):
        self._engine.check_running()
        chunksize = _check_chunksize(chunksize)
        buffersize = check_buffersize(buffersize)
        timeout = check_task_timeout(timeout)
        self._check_timeout_supported(timeout)
        job = IMapJob(
            self._engine,
            self._func(func),
            func,
            iterable,
            star,
            chunksize,
            timeout,
            self._processes,
            buffersize,
            ordered=cls is not IMapUnorderedIterator,
        )
        if progress:
            job.progress = _progress.bar(_progress.length_hint(iterable))
        self._engine.submit(job)
        job.start()
        return cls(job)

    def _check_timeout_supported(self, timeout: TaskTimeout | None) -> None:
        if timeout is not None and timeout.soft is not None and not self._engine.kills_workers:
            raise ValueError("a soft timeout needs local worker processes, not a cluster")

    def _submit_future(self, func, args, kwds, timeout, future) -> None:
        """Run ``func(*args, **kwds)``; settle the ``concurrent.futures.Future`` with it.

        The future is marked running when its task is sent, and a cancelled future's
        task is never sent (``plait.pool.executor``).
        """
        self._engine.check_running()
        job = FutureJob(self._engine, self._func(func), func, args, kwds, future, timeout)
        self._engine.submit(job)

    def _cancel_pending_futures(self) -> None:
        self._engine.cancel_pending()

    # -- life cycle -----------------------------------------------------------------

    def close(self) -> None:
        """Accept no more work; the workers exit once the accepted work is done.

        Returns at once. The rest of the input of ``imap`` iterators is read in the
        background, as the standard pool does, and ``join`` waits for it (an ``imap``
        with a ``buffersize`` reads no more: see ``IMapJob.drain``).
        """
        engine = self._engine
        with engine.lock:
            lazy = list(engine.lazy_open) if engine.state == RUN else []
        for job in lazy:
            job.drain()
        engine.close()
        if self._state == RUN:
            self._state = CLOSE

    def terminate(self) -> None:
        """Stop the workers now; pending results fail with ``PoolTerminatedError``.

        Blocks until the workers are reaped (a few seconds at most).
        """
        self._state = TERMINATE
        self._engine.terminate()
        self._engine.join(None)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the workers to exit, after ``close()`` or ``terminate()``.

        Blocks up to ``timeout`` seconds (None: no limit; negative: do not wait). Raises
        ``ValueError`` if the pool is still running.
        """
        timeout = check_wait_timeout(timeout)
        if self._engine.state == RUN:
            raise ValueError("Pool is still running")
        self._engine.join(timeout)

    def stats(self) -> PoolStats:
        """Counters: workers, tasks done and failed, in flight, busy seconds, replaced."""
        return self._engine.stats(self._engine.worker_names())

    # -- the standard pool's internals that programs read ---------------------------

    @property
    def _pool(self) -> list:
        """The live workers, as the standard pool lists them: ``Process`` objects (threads
        in a ``ThreadPool``; none for a cluster backend). A snapshot: plait's engine
        replaces workers by itself."""
        return self._engine.workers()

    def _repopulate_pool(self) -> None:
        """Start the replacements of workers that ended (the standard pool's hook).

        plait's engine starts them by itself; this only wakes it, so they start now.
        """
        self._engine.wake()

    def __del__(self, _warn=warnings.warn) -> None:
        # As the standard pool: the finalizer above stops the workers, and a pool
        # dropped while it still ran is worth a ResourceWarning (hidden by default).
        if self._state == RUN and self._warn_unclosed:
            _warn(f"unclosed running multiprocessing pool {self!r}", ResourceWarning, source=self)

    def __enter__(self) -> Pool:
        self._engine.check_running()
        return self

    def __exit__(self, *exc) -> None:
        self.terminate()

    def __reduce__(self):
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")

    def __repr__(self) -> str:
        return (
            f"<{type(self).__module__}.{type(self).__qualname__} "
            f"state={self._engine.state} pool_size={self._processes}>"
        )


class ThreadPool(Pool):
    """``Pool``'s interface on threads of this process (nothing is pickled).

    ``ThreadPool(processes=None, initializer=None, initargs=())``. A thread cannot be
    stopped, so per-task ``timeout=`` raises ``ValueError`` here; use ``Pool`` for it,
    and ``terminate()`` does not wait for the tasks that are running.
    """

    _thread_workers = True

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
    ) -> None:
        super().__init__(processes, initializer, initargs)

    def _make_engine(self, processes, initializer, initargs, maxtasks, context):
        return ThreadEngine(processes, initializer, initargs)

    def terminate(self) -> None:
        """Stop now; pending results fail with ``PoolTerminatedError``. Never blocks.

        A thread cannot be stopped: one running a task finishes it and then exits,
        taking nothing new (``join()`` waits for it), as in ``multiprocessing.pool``.
        """
        self._state = TERMINATE
        self._engine.terminate()

    def _check_timeout_supported(self, timeout: TaskTimeout | None) -> None:
        if timeout is not None:
            raise ValueError(
                "a ThreadPool cannot stop a running thread: per-task timeout= needs Pool"
            )
