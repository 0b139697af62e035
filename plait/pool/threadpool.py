"""The thread engine: ``ThreadPool``'s workers are threads of this process.

Each worker thread takes a chunk from the shared job queue (``Engine.take_chunk``)
under the engine's lock, runs it without the lock, and reports the outcome. Nothing is
pickled: arguments, functions and results are passed as they are, as in
``multiprocessing.pool.ThreadPool``. A thread cannot be stopped from outside, so a
thread pool takes no per-task timeout, and ``terminate()`` fails the unsent tasks with
``PoolTerminatedError`` and returns without waiting for the running ones: each thread
finishes its task, then sees the state and exits without taking another (``join``
waits for them). A worker whose initializer raised answers each task it takes with
``BrokenThreadPool`` (the standard executor's error for it; a ``RuntimeError``), the
initializer's exception as its cause.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures.thread import BrokenThreadPool

from plait.pool.engine import CLOSE, TERMINATE, Engine
from plait.pool.errors import PoolTerminatedError
from plait.pool.worker import APPLY, MAP

__all__ = ["ThreadEngine"]


def _run(func, kind: int, items: list) -> tuple[list, list | None]:
    if kind == APPLY:
        args, kwds = items[0]
        try:
            return [func(*args, **kwds)], None
        except BaseException as exc:  # sys.exit() in a task fails the task, not the thread
            return [None], [(0, exc)]
    if kind == MAP:
        calls = map(func, items)
    else:
        calls = (func(*item) for item in items)
    values: list = []
    errors = None
    while True:
        try:
            values.extend(calls)
            return values, errors
        except BaseException as exc:
            if errors is None:
                errors = []
            errors.append((len(values), exc))
            values.append(None)
            if kind != MAP:  # a generator that raised is finished: go on by hand
                calls = (func(*item) for item in items[len(values) :])


class ThreadEngine(Engine):
    """Run jobs on ``workers`` threads."""

    def __init__(self, workers: int, initializer, initargs) -> None:
        super().__init__(workers)
        self._cond = threading.Condition(self.lock)
        self._initializer = initializer
        self._initargs = initargs
        self._threads = [
            threading.Thread(target=self._work, name=f"plait-ThreadPool-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    def wake(self) -> None:
        with self.lock:
            self._cond.notify_all()

    def terminate(self) -> None:
        with self.lock:
            self.state = TERMINATE
            self.fail_pending(PoolTerminatedError("pool terminated before the task started"))
            self._cond.notify_all()
        self.run_deferred()

    def join(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        me = threading.current_thread()
        for t in self._threads:
            if t is me:
                continue
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads if t is not me)

    def worker_names(self) -> tuple:
        return tuple(t.name for t in self._threads if t.is_alive())

    def workers(self) -> list:
        return [t for t in self._threads if t.is_alive()]

    def _work(self) -> None:
        name = threading.current_thread().name
        failed = None  # a worker whose initializer raised answers every task with that error
        if self._initializer is not None:
            try:
                self._initializer(*self._initargs)
            except BaseException as exc:
                failed = BrokenThreadPool(
                    f"the pool's initializer failed in thread {name}: {exc!r}"
                )
                failed.__cause__ = exc
        clock = time.perf_counter
        while True:
            with self.lock:
                while True:
                    if self.state == TERMINATE:
                        return
                    taken = self.take_chunk(self.workers_wanted, True, None)
                    if taken is not None:
                        break
                    if self.state == CLOSE and not self.has_unsent():
                        self._cond.notify_all()
                        return
                    self._cond.wait()
            job, start, items = taken
            started = clock()
            if failed is None:
                values, errors = _run(job.func, job.kind, items)
            else:
                values, errors = [None] * len(items), [(i, failed) for i in range(len(items))]
            seconds = clock() - started
            with self.lock:
                self.busy[name] = self.busy.get(name, 0.0) + seconds
            self.outcome(job, start, values, errors, seconds)
            # Drop this chunk's arguments and results before waiting for the next one:
            # the caller expects them freed once it has its result (as the standard
            # pool's workers do).
            del taken, job, items, values, errors
