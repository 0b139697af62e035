"""``run_in_thread``: blocking calls, run by a bounded pool of worker threads.

Each kernel owns at most ``max_threads`` (``run(..., max_threads=16)``) worker threads,
started on demand and stopped when ``run()`` returns. ``await run_in_thread(f, *args)``
puts a job on the pool's list and suspends the task; the worker that takes the job calls
``f`` and hands the result back with ``Kernel.wake_threadsafe``. While the job waits for a
worker, cancelling the task removes it; once a worker runs it, a thread cannot be stopped,
so cancellation is delivered to the task at once and the late result is dropped (the
worker stays busy until ``f`` returns). ``run()`` waits for busy workers when it closes
(30 s at most for all of them, then it logs those still busy and leaves them behind).

The pool's invariant: every job on the list has a worker of its own, one that ``submit``
woke or a thread it started, until ``max_threads`` run; past that, jobs wait for the busy
workers, which look at the list before they wait. ``_idle`` counts the workers that wait
and were not woken yet, and ``submit`` takes a worker off it as it wakes it (not the
worker, once it runs): two jobs submitted in one step must not both count on the same
idle worker, or they run one after the other, and a job that waits for the other never
returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from . import traps

__all__ = ["run_in_thread"]

_STOP = object()
_JOIN_TIMEOUT = 30.0
log = logging.getLogger("plait.coro")


class _Job:
    __slots__ = ("task", "fn", "args", "started")

    def __init__(self, task: Any, fn: Callable[..., Any], args: tuple) -> None:
        self.task = task
        self.fn = fn
        self.args = args
        self.started = False


class _ThreadPool:
    """Worker threads of one kernel; ``submit`` never blocks."""

    def __init__(self, kernel: Any, max_threads: int) -> None:
        self._kernel = kernel
        self._max = max(1, max_threads)
        self._jobs: deque = deque()
        self._cond = threading.Condition(threading.Lock())
        self._threads: list[threading.Thread] = []
        self._idle = 0
        kernel.closers.append(self.shutdown)

    def submit(self, job: _Job) -> None:
        with self._cond:
            self._jobs.append(job)
            if self._idle:
                self._idle -= 1  # this worker is taken: the next job needs another
                self._cond.notify()
            elif len(self._threads) < self._max:
                thread = threading.Thread(
                    target=self._work, name=f"plait.coro-worker-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()

    def withdraw(self, job: _Job) -> bool:
        """Cancel hook: drop a job no worker took yet. Always lets the cancellation go."""
        with self._cond:
            if not job.started:
                try:
                    self._jobs.remove(job)
                except ValueError:
                    pass
        return True

    def _work(self) -> None:
        wake = self._kernel.wake_threadsafe
        while True:
            with self._cond:
                while not self._jobs:  # a busy worker that woke another may take its job
                    self._idle += 1
                    self._cond.wait()  # whoever wakes it took it off ``_idle``
                job = self._jobs.popleft()
                if job is _STOP:
                    return
                job.started = True
            try:
                result = job.fn(*job.args)
            except BaseException as e:  # handed to the awaiting task, raised there
                wake(job.task, job, None, e)
            else:
                wake(job.task, job, result, None)
                del result
            del job  # an idle worker keeps neither the job nor its result alive

    def shutdown(self) -> None:
        with self._cond:
            self._jobs.clear()
            self._jobs.extend(_STOP for _ in self._threads)
            self._cond.notify_all()
        deadline = time.monotonic() + _JOIN_TIMEOUT  # one wait for all, not one each
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning(
                    "%s still runs a job after %g s; left behind", thread.name, _JOIN_TIMEOUT
                )
        self._threads.clear()


async def run_in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(*args)`` in a worker thread; return its result or raise its exception.

    Blocks the task (never the kernel) until ``fn`` returns. A blocking point: on
    cancellation the task goes on at once, the thread finishes ``fn`` and its result is
    dropped.

    >>> import hashlib
    >>> from plait.coro import run
    >>> async def main():
    ...     digest = await run_in_thread(hashlib.sha256, b"plait" * 100_000)
    ...     return digest.hexdigest()[:16]
    >>> run(main)
    '261aa4309e7fdfd7'
    """
    k = traps.kernel()
    pool = getattr(k, "thread_pool", None)
    if pool is None:
        pool = k.thread_pool = _ThreadPool(k, k.max_threads)
    job = _Job(k.current, fn, args)
    pool.submit(job)
    return await traps.suspend("THREAD_WAIT", job, lambda: pool.withdraw(job))
