"""The engine of cluster backends: the pool's jobs, run as tasks of a cluster's scheduler.

Theory of operation
-------------------
A cluster backend does not start workers of its own: Dask or Ray owns the workers,
places tasks, retries a task whose worker died and replaces the worker. What plait
keeps is everything above that, unchanged: the jobs (``plait.pool.jobs``), with their
ordered outcomes, lazy ``imap`` windows, callbacks and progress bars, and the results
callers hold (``plait.pool.results``). ``RemoteEngine`` stands where the local
``ProcessEngine`` stands and talks to the cluster through a *runner* (``dask_runner``,
``ray_runner``):

- ``runner.slots``: how many tasks the cluster runs at once (its worker threads);
- ``runner.submit(payload, done)``: start ``run_chunk(payload)`` on the cluster; return
  a handle; ``done(handle)`` is called from any thread when it has finished;
- ``runner.collect(handles)``: ``(handle, result bytes or exception)`` for finished
  handles, fetched in one round trip;
- ``runner.translate(exc)``: the pool's error for an engine's failure (a worker lost
  after the engine's retries becomes ``RemoteWorkerLostError``);
- ``runner.stop(handle)``: a task overran its timeout: cancel it and stop the process
  that runs it (the engine replaces it); ``runner.cancel(handles)`` on ``terminate``;
- ``runner.worker_names()``, ``runner.close()``.

One thread, the engine's, does all the talking to the runner. Its loop: dispatch chunks
while fewer than ``PREFETCH`` per slot are in flight, sleep on a condition until a task
finishes, new work arrives (``wake``) or the nearest per-task deadline passes, then
collect every finished task at once. Nothing polls.

Batching: a cluster task costs milliseconds of scheduling (Dask's about 4 ms), so
tiny tasks must travel in chunks. The job sizes its chunks for ``TARGET_SECONDS`` of
the local pool (10 ms); this engine measures each job's seconds per item itself and
merges consecutive chunks of the same job up to ``REMOTE_TARGET_SECONDS``, never more
than its share of what is left, so every slot still gets work. A chunk travels as one
bytes payload that plait serialized (the function as the job's bytes, the items by
the C pickler): arguments that cannot be pickled fail their chunk here, at once, and
the engine only carries bytes. A function of ``__main__`` travels by value
(cloudpickle): a cluster worker's ``__main__`` is not the caller's. ``run_chunk``
runs on the cluster's worker with the local worker's loop, so each item's exception
comes back with its remote traceback and a value that cannot be pickled comes back as
``MaybeEncodingError``.

Timeouts: a chunk of a job with a per-task ``timeout`` is one item and is handed to
the cluster only while a slot is free, so its deadline, counted from then, measures
the task. At the deadline the task fails with ``TimeoutError`` and ``runner.stop``
stops the process running it (a thread cannot be stopped).

Dead workers: the engine retries the task on another worker (Dask's
``allowed-failures``, Ray's ``max_retries``); when all attempts lost their worker the
chunk fails with ``RemoteWorkerLostError``; the other chunks are not touched. A task
may therefore run more than once: cluster tasks are at-least-once.

Close and terminate: ``close()`` finishes what was accepted, then the runner closes
(a cluster the pool started stops; a cluster given by address is left running).
``terminate()`` cancels what is in flight and fails everything pending with
``PoolTerminatedError``; a task already running on a shared cluster's worker thread
cannot be stopped, only forgotten.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import threading
import time
import weakref
from collections import deque
from typing import Any

from plait._core import serialization
from plait.pool import worker
from plait.pool.engine import CLOSE, TERMINATE, Engine
from plait.pool.errors import MaybeEncodingError, PoolTerminatedError, TimeoutError

__all__ = ["RemoteEngine", "run_chunk", "PREFETCH", "REMOTE_TARGET_SECONDS"]

PREFETCH = 2
REMOTE_TARGET_SECONDS = 0.2
MAX_REMOTE_CHUNK = 100_000
_JOIN_SECONDS = 30.0

_funcs: dict[bytes, Any] = {}


def run_chunk(payload: bytes) -> bytes:
    """Run one chunk on a cluster worker (never raises for a task's own error).

    ``payload`` is ``serialization.dumps((func_bytes, kind, items))``; the answer is
    ``serialization.dumps((values, errors, seconds, worker))`` with ``errors`` the
    ``(position, RemoteException)`` pairs of the items that raised.
    """
    func_bytes, kind, items = serialization.loads(payload)
    me = f"{socket.gethostname()}:{os.getpid()}"
    try:
        func = _funcs.get(func_bytes)
        if func is None:
            if len(_funcs) >= 64:
                _funcs.clear()
            func = _funcs[func_bytes] = serialization.loads(func_bytes)
    except Exception as exc:
        failure = worker._remote(exc)
        return serialization.dumps(
            ([None] * len(items), [(i, failure) for i in range(len(items))], 0.0, me)
        )
    started = time.perf_counter()
    values, errors = worker._run(func, kind, items)
    seconds = time.perf_counter() - started
    try:
        return serialization.dumps((values, errors, seconds, me))
    except Exception:
        pass
    # Something does not pickle: find it, item by item (as the local worker does).
    errors = list(errors or ())
    for i, value in enumerate(values):
        try:
            serialization.dumps(value)
        except Exception as why:
            values[i] = None
            errors.append((i, worker.RemoteException(MaybeEncodingError(why, value), "")))
    return serialization.dumps((values, errors, seconds, me))


class _Chunk:
    __slots__ = ("job", "start", "items", "deadline")

    def __init__(self, job, start: int, items: list) -> None:
        self.job = job
        self.start = start
        self.items = items
        self.deadline: float | None = None


class RemoteEngine(Engine):
    """Run a pool's jobs as tasks of a cluster through ``runner`` (see the module essay).

    ``processes``: at most that many chunks run at once (None: the cluster's slots).
    """

    def __init__(self, runner, processes: int | None = None) -> None:
        super().__init__(runner.slots if processes is None else processes)
        self._runner = runner
        self._slots = self.workers_wanted
        self._inflight: dict[Any, _Chunk] = {}
        self._finished: deque = deque()  # handles reported done by the runner
        self._cond = threading.Condition(threading.Lock())
        self._woken = False
        self._rates: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._by_value: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._thread = threading.Thread(
            target=self._run, name="plait-cluster-scheduler", daemon=True
        )
        self._thread.start()

    # -- callers' side --------------------------------------------------------------

    def wake(self) -> None:
        with self._cond:
            self._woken = True
            self._cond.notify()

    def _task_done(self, handle) -> None:
        with self._cond:
            self._finished.append(handle)
            self._cond.notify()

    def join(self, timeout: float | None) -> bool:
        if threading.current_thread() is self._thread:
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def worker_names(self) -> tuple:
        return self._runner.worker_names()

    # -- the engine thread ----------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException:
            sys.excepthook(*sys.exc_info())
            self.state = TERMINATE
        finally:
            self._shutdown()

    def _loop(self) -> None:
        while True:
            state = self.state
            if state == TERMINATE:
                return
            self._dispatch()
            if state == CLOSE and not self._inflight and not self.has_unsent():
                return
            timeout = self._next_deadline()
            with self._cond:
                if not self._finished and not self._woken:
                    self._cond.wait(timeout)
                finished = list(self._finished)
                self._finished.clear()
                self._woken = False
            if finished:
                self._collect(finished)
            self._expire()

    def _dispatch(self) -> None:
        inflight = self._inflight
        while len(inflight) < self._slots * PREFETCH:
            taken = self._take(timed_ok=len(inflight) < self._slots)
            if taken is None:
                return
            job, start, items = taken
            try:
                payload = serialization.dumps((self._func_bytes(job), job.kind, items))
                handle = self._runner.submit(payload, self._task_done)
            except Exception as exc:  # arguments that cannot be pickled, a closed client
                self._fail(job, start, len(items), exc)
                continue
            chunk = _Chunk(job, start, items)
            if job.timeout is not None:
                chunk.deadline = time.monotonic() + job.timeout
            inflight[handle] = chunk

    def _func_bytes(self, job) -> bytes:
        """The job's function as it travels to the cluster: by value if from ``__main__``.

        A local worker finds ``__main__`` functions by name (spawn re-imports the main
        module); a cluster worker runs another ``__main__``, so they travel by value.
        """
        func_bytes = self._by_value.get(job)
        if func_bytes is None:
            func_bytes = job.func_bytes
            if getattr(job.func, "__module__", None) == "__main__":
                import cloudpickle  # noqa: PLC0415 - only for functions of __main__

                func_bytes = cloudpickle.dumps(job.func, protocol=serialization.PROTOCOL)
            self._by_value[job] = func_bytes
        return func_bytes

    def _take(self, timed_ok: bool):
        """The next chunk, merged with more of its job up to the remote target."""
        taken = self.take_chunk(self._slots, timed_ok, None)
        if taken is None:
            return None
        job, start, items = taken
        rate = self._rates.get(job)
        if job.timeout is not None or job.chunksize is not None or not rate or not rate[0]:
            return taken
        per_item = rate[1] / rate[0]
        want = MAX_REMOTE_CHUNK if per_item <= 0 else int(REMOTE_TARGET_SECONDS / per_item)
        with self.lock:
            share = len(items) + math.ceil(len(job.buffer) / (2 * self._slots))
            want = min(want, share, MAX_REMOTE_CHUNK)
            while (
                len(items) < want
                and self.ready
                and self.ready[0] is job
                and not job.done
                and job.buffer
            ):
                more = self.take_chunk(self._slots, timed_ok, want - len(items))
                if more is None:
                    break
                items = [*items, *more[2]]
        return job, start, items

    def _collect(self, handles: list) -> None:
        for handle, got in self._runner.collect(handles):
            chunk = self._inflight.pop(handle, None)
            if chunk is None:
                continue  # already settled: it timed out
            job, count = chunk.job, len(chunk.items)
            if isinstance(got, BaseException):
                self._fail(job, chunk.start, count, self._runner.translate(got))
                continue
            try:
                values, errors, seconds, where = serialization.loads(got)
            except Exception as exc:  # a result class this process cannot import
                self._fail(job, chunk.start, count, exc)
                continue
            with self.lock:
                self.busy[where] = self.busy.get(where, 0.0) + seconds
                if job.chunksize is None and job.timeout is None:
                    rate = self._rates.setdefault(job, [0, 0.0])
                    rate[0] += count
                    rate[1] += seconds
            self.outcome(job, chunk.start, values, errors, seconds)

    def _fail(self, job, start: int, count: int, exc: BaseException) -> None:
        self.outcome(job, start, [None] * count, [(i, exc) for i in range(count)], 0.0)

    # -- deadlines ------------------------------------------------------------------

    def _next_deadline(self) -> float | None:
        deadlines = [c.deadline for c in self._inflight.values() if c.deadline is not None]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _expire(self) -> None:
        now = time.monotonic()
        for handle, chunk in list(self._inflight.items()):
            if chunk.deadline is None or chunk.deadline > now:
                continue
            del self._inflight[handle]
            self._runner.stop(handle)
            exc = TimeoutError(
                f"task {chunk.start} of job {chunk.job.id} ran over its timeout of "
                f"{chunk.job.timeout} s; its cluster worker is being restarted"
            )
            self._fail(chunk.job, chunk.start, 1, exc)

    # -- the end --------------------------------------------------------------------

    def _shutdown(self) -> None:
        exc = PoolTerminatedError("pool terminated before the task finished")
        try:
            if self._inflight:
                self._runner.cancel(list(self._inflight))
            for chunk in self._inflight.values():
                self._fail(chunk.job, chunk.start, len(chunk.items), exc)
            self._inflight.clear()
            self.fail_pending(exc)
        finally:
            self._runner.close()
