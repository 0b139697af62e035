"""``ProcessPoolExecutor`` and ``ThreadPoolExecutor``: the futures API on plait's pools.

An executor is a ``Pool`` (or ``ThreadPool``) behind the ``concurrent.futures``
interface. ``submit`` returns a real ``concurrent.futures.Future``, so ``as_completed``,
``wait`` and ``asyncio.wrap_future`` work on it; the future turns *running* when its
task is sent to a worker, and a future cancelled before that is never sent.

Where the standard executors break, these do not: a worker killed in the middle of a
task fails that future alone with ``WorkerLostError`` (no ``BrokenProcessPool`` for the
rest), a replacement starts, and the executor stays usable. ``task_timeout=`` (process
executor only) is a per-task limit: the worker is killed and replaced, the future fails
with ``TimeoutError``; ``soft_timeout=`` (at most ``task_timeout``) raises
``SoftTimeoutError`` inside the task first, so that it can clean up.

At interpreter exit each executor still alive finishes the work submitted to it, also
after ``shutdown(wait=False)`` or without any shutdown, as the standard executors do: a
hook run by ``threading._shutdown`` (the standard executors' own place, before the
non-daemon threads are joined and before ``atexit`` hooks) shuts it down and waits.
So a ``ThreadPoolExecutor``'s task may still use a ``Pool``, which is terminated later,
at ``atexit`` (``plait.pool.pool``).

``get_reusable_executor()`` returns one process executor across calls, whose workers exit
when idle and come back with work.

``map(fn, *iterables, timeout=None, chunksize=None)`` reads its input lazily (the
standard one submits everything at once); ``timeout`` counts from the call, as in the
standard library, and ``chunksize=None`` sizes chunks from measured task times.

Identity: ``ThreadPoolExecutor`` is a ``concurrent.futures.ThreadPoolExecutor`` and
``ProcessPoolExecutor`` a ``concurrent.futures.ProcessPoolExecutor``, so that code
which checks the class takes them (``asyncio``'s ``loop.set_default_executor`` raises
``TypeError`` for anything else since 3.11, and warned before). They are subclasses for
that alone: every method is plait's, the standard ``__init__`` never runs, and the
standard class's internals (``_adjust_thread_count``, ``_spawn_process``, ...) raise
``NotImplementedError`` saying so. A worker's death fails its future with
``WorkerLostError``, a ``BrokenProcessPool``; a thread whose initializer raised fails
the tasks it takes with ``BrokenThreadPool`` (``plait.pool.errors``, ``threadpool``).
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from plait.pool.pool import Pool, ThreadPool, default_processes
from plait.pool.results import IMapIterator, TaskTimeout, check_task_timeout
from plait.process.cpu import process_cpu_count

# Bound once: under plait.patch() a read of concurrent.futures.Future goes through the
# patched module's attribute view, which every submit would pay.
_Future = concurrent.futures.Future

__all__ = ["ProcessPoolExecutor", "ThreadPoolExecutor", "get_reusable_executor"]

_live_executors: weakref.WeakSet = weakref.WeakSet()


def _python_exit() -> None:
    """At exit: each live executor finishes its work (the standard hook's name)."""
    for executor in list(_live_executors):
        executor.shutdown(wait=True)


threading._register_atexit(_python_exit)
# A forked child inherits the set but not the executors' threads: they are not its own.
os.register_at_fork(after_in_child=_live_executors.clear)


def _standard_internal(cls: str, name: str) -> Callable[..., Any]:
    """A method of the standard executor's machinery, which plait's executor has not."""

    def internal(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            f"concurrent.futures.{cls}.{name} is an internal of the standard executor; "
            f"plait's {cls} starts and replaces its workers itself (plait.pool.executor)"
        )

    internal.__name__ = internal.__qualname__ = name
    return internal


def _cover_standard_methods(cls: type) -> None:
    """Give ``cls`` every method its standard base classes define and it does not, as one
    that raises ``NotImplementedError`` naming it: no standard code runs on plait's
    executors, also when a newer Python adds a method to the standard class."""
    for base in cls.__mro__:
        if not base.__module__.startswith("concurrent.futures"):
            continue
        for name, value in vars(base).items():
            dunder = name.startswith("__") and name.endswith("__")
            if callable(value) and not dunder and getattr(cls, name) is value:
                setattr(cls, name, _standard_internal(cls.__name__, name))


class _Executor(concurrent.futures.Executor):
    """What both executors share: ``submit``, ``map``, ``shutdown``, context manager."""

    _pool: Pool
    _task_timeout: TaskTimeout | None = None

    def __init__(self, pool: Pool, max_workers: int) -> None:
        self._pool = pool
        pool._warn_unclosed = False  # an executor dropped unshut does not warn either
        self._max_workers = max_workers  # the standard executors' name, read by programs
        self._shutdown = False
        _live_executors.add(self)

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future:
        """Schedule ``fn(*args, **kwargs)``; return its ``Future`` at once.

        Raises ``RuntimeError`` after ``shutdown``, ``TypeError`` if ``fn`` is not
        callable, ``pickle.PicklingError`` if a process executor cannot send ``fn``.
        """
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        future: concurrent.futures.Future = _Future()
        self._pool._submit_future(fn, args, kwargs, self._task_timeout, future)
        return future

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
        buffersize: int | None = None,
    ) -> Iterator[Any]:
        """``map(fn, *iterables)`` run by the workers; results in input order.

        The iterator raises a task's exception at its position, and
        ``TimeoutError`` when a result is not there ``timeout`` seconds after this call.
        ``buffersize`` bounds the tasks read from the input but not yet yielded.
        Raises ``RuntimeError`` after ``shutdown``.
        """
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        deadline = None if timeout is None else time.monotonic() + timeout
        results = self._pool._imap(
            IMapIterator,
            fn,
            zip(*iterables, strict=False),
            chunksize,
            self._task_timeout,
            False,
            buffersize,
            star=True,
        )
        return _results(results, deadline)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Accept no more work; with ``cancel_futures`` cancel the futures not started.

        With ``wait`` blocks until the running and queued tasks are done and the
        workers have exited.
        """
        if not self._shutdown:
            self._shutdown = True
            if cancel_futures:
                self._pool._cancel_pending_futures()
            self._pool.close()
        if wait:
            self._pool.join()

    def stats(self):
        """The pool's counters (see ``Pool.stats``)."""
        return self._pool.stats()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown(wait=True)


def _results(results: IMapIterator, deadline: float | None) -> Iterator[Any]:
    try:
        while True:
            try:
                if deadline is None:
                    yield results.next()
                else:
                    yield results.next(max(0.0, deadline - time.monotonic()))
            except StopIteration:
                return
    finally:
        # Also when the caller stops early (closes the iterator, drops it, gets a timeout
        # or a task's error): the standard map cancels the futures not started.
        results._job.abandon()


class ProcessPoolExecutor(_Executor, concurrent.futures.ProcessPoolExecutor):
    """A ``concurrent.futures`` executor on worker processes that never breaks.

    ``ProcessPoolExecutor(max_workers=None, mp_context=None, initializer=None,
    initargs=(), max_tasks_per_child=None, *, task_timeout=None, soft_timeout=None,
    backend="local", address=None, backend_options=None, worker_env=None,
    cap_threads=True, max_memory_per_child=None, idle_timeout=None)``: the last seven as
    for ``Pool``;
    ``soft_timeout`` raises ``SoftTimeoutError`` inside a task that runs longer
    (``Pool``'s ``timeout=(soft, hard)``), ``task_timeout`` kills its worker.

    >>> with ProcessPoolExecutor(task_timeout=10) as ex:
    ...     ex.submit(pow, 2, 10).result(timeout=10)
    1024
    """

    def __init__(
        self,
        max_workers: int | None = None,
        mp_context: Any = None,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
        max_tasks_per_child: int | None = None,
        *,
        task_timeout: float | None = None,
        soft_timeout: float | None = None,
        backend: str = "local",
        address: Any = None,
        backend_options: Any = None,
        worker_env: Any = None,
        cap_threads: bool = True,
        max_memory_per_child: int | str | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        self._task_timeout = check_task_timeout((soft_timeout, task_timeout))
        if soft_timeout is not None and backend != "local":
            raise ValueError("a soft timeout needs local worker processes, not a cluster")
        pool = Pool(
            max_workers,
            initializer,
            initargs,
            max_tasks_per_child,
            mp_context,
            backend=backend,
            address=address,
            backend_options=backend_options,
            worker_env=worker_env,
            cap_threads=cap_threads,
            max_memory_per_child=max_memory_per_child,
            idle_timeout=idle_timeout,
        )
        super().__init__(pool, pool._processes)

    def terminate_workers(self) -> None:
        """Shut down and SIGTERM every worker now (the standard executor's, from 3.14).

        Futures not started are cancelled; running ones fail with ``PoolTerminatedError``
        (a ``BrokenExecutor``). Blocks until the workers are reaped (seconds at most).
        """
        self._stop_workers(signal.SIGTERM)

    def kill_workers(self) -> None:
        """As ``terminate_workers``, with SIGKILL."""
        self._stop_workers(signal.SIGKILL)

    def _stop_workers(self, signum: int) -> None:
        self.shutdown(wait=False, cancel_futures=True)
        self._pool._engine.stop_signal = signum
        self._pool.terminate()


class ThreadPoolExecutor(_Executor, concurrent.futures.ThreadPoolExecutor):
    """A ``concurrent.futures`` executor on threads of this process.

    ``ThreadPoolExecutor(max_workers=None, thread_name_prefix="", initializer=None,
    initargs=())``; ``max_workers`` defaults to ``min(32, process_cpu_count() + 4)`` as
    in the standard library (3.13: the CPUs this process may use).
    """

    def __init__(
        self,
        max_workers: int | None = None,
        thread_name_prefix: str = "",
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
    ) -> None:
        if max_workers is None:
            max_workers = min(32, process_cpu_count() + 4)
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        super().__init__(ThreadPool(max_workers, initializer, initargs), max_workers)


for _executor in (ProcessPoolExecutor, ThreadPoolExecutor):
    _cover_standard_methods(_executor)
del _executor


class _Reusable:
    """The executor ``get_reusable_executor`` hands out, and the arguments it was made with."""

    lock = threading.Lock()
    executor: ProcessPoolExecutor | None = None
    arguments: tuple | None = None


def get_reusable_executor(
    max_workers: int | None = None, idle_timeout: float | None = 300, **kwargs: Any
) -> ProcessPoolExecutor:
    """A process executor that lives across calls: the same one while the arguments are
    the same, as loky's function of that name.

    Its workers exit after ``idle_timeout`` seconds without work and start again on the
    next task, so a program that calls it in many places keeps one set of workers and
    holds no processes while idle. ``kwargs`` are ``ProcessPoolExecutor``'s.

    Called with other arguments than the live executor's (a different ``max_workers``,
    ``initializer``...), a new one is made and the live one is shut down without waiting:
    the work already submitted to it, by this thread or another, still completes, and
    nothing blocks. One reusable executor at a time; one that its user shut down is
    replaced too. Raises what ``ProcessPoolExecutor`` raises for bad arguments.
    """
    if max_workers is None:
        max_workers = default_processes()
    arguments = (max_workers, idle_timeout, sorted(kwargs.items()))
    with _Reusable.lock:
        current = _Reusable.executor
        if current is not None and not current._shutdown and _Reusable.arguments == arguments:
            return current
        executor = ProcessPoolExecutor(max_workers, idle_timeout=idle_timeout, **kwargs)
        _Reusable.executor, _Reusable.arguments = executor, arguments
    if current is not None:
        current.shutdown(wait=False)
    return executor
