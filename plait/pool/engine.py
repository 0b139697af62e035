"""What both engines share: the queue of jobs with items to send, pool state, statistics.

An *engine* runs a pool's jobs on its workers: ``scheduler.ProcessEngine`` on processes,
``threadpool.ThreadEngine`` on threads. Callers' threads add work (``submit``, and
``add_items`` from the reader of an ``imap`` input: its consumer or its feeder thread,
see ``jobs``) and the engine's own thread(s) take chunks
(``take_chunk``) and report outcomes through the jobs. One re-entrant lock, ``lock``,
guards the queue, the jobs' buffers and the statistics (re-entrant: an engine settles
several outcomes under one hold of it). ``wake()`` tells the engine there is something
new; each engine says how it sleeps.

User code never runs under ``lock``: a job's ``callback``/``error_callback``, the
done-callbacks of an executor's future and the progress bar's update are *deferred*
(``defer``) while the lock is held, and run by ``run_deferred`` once the thread that
settled the outcome has released it, in the order the outcomes were settled. One
thread at a time runs them (``_deferred_lock``, tried without blocking): a thread that
finds another one running them leaves its own to it, so they keep their order, and a
callback that sleeps delays the callbacks after it, never a caller's ``apply_async``.

States, the standard pool's names and values: ``INIT`` (a pool still starting its
workers, before its engine exists); ``RUN`` accepts work; ``CLOSE`` (after ``close()``)
finishes what was accepted and then stops the workers; ``TERMINATE`` stops the workers
now and fails whatever is pending with ``PoolTerminatedError``.
"""

from __future__ import annotations

import dataclasses
import sys
import weakref
from collections import deque
from threading import Lock, RLock

from plait.pool.errors import PoolTerminatedError

__all__ = ["Engine", "PoolStats", "INIT", "RUN", "CLOSE", "TERMINATE"]

INIT, RUN, CLOSE, TERMINATE = "INIT", "RUN", "CLOSE", "TERMINATE"


@dataclasses.dataclass(frozen=True)
class PoolStats:
    """A snapshot of a pool's counters (``Pool.stats()``).

    ``workers`` names the live workers (pids; thread names in a ``ThreadPool``).
    ``busy_seconds`` maps each worker (pid, or thread name) to the seconds it spent
    computing tasks; workers that ended keep their entry.
    """

    workers: tuple
    tasks_done: int
    tasks_failed: int
    in_flight: int
    workers_replaced: int
    busy_seconds: dict


class Engine:
    """The shared half of an engine; subclasses start workers and implement ``wake``.

    ``kills_workers``: whether the engine stops a cancelled job that a worker runs
    already by killing that worker (processes can be killed, threads cannot).
    """

    kills_workers = False

    def __init__(self, workers: int) -> None:
        self.lock = RLock()
        self.state = RUN
        self.workers_wanted = workers
        self.ready: deque = deque()  # jobs with buffered items, oldest first
        self.lazy_open: weakref.WeakSet = weakref.WeakSet()  # imap jobs still reading input
        self.tasks_done = 0
        self.tasks_failed = 0
        self.in_flight = 0
        self.workers_replaced = 0
        self.busy: dict = {}
        self.costs: dict = {}  # seconds per item of each function, last measured
        self.cancelled_any = False  # a job was cancelled after some of it was sent
        self._deferred: deque = deque()  # (func, args) to run once the lock is released
        self._deferred_lock = Lock()  # held by the thread running them

    def wake(self) -> None:
        raise NotImplementedError

    def defer(self, func, *args) -> None:
        """Have ``func(*args)`` run once the lock is released (user code: see above)."""
        self._deferred.append((func, args))

    def run_deferred(self) -> None:
        """Run what was deferred, in order, unless this thread holds the lock (its outer
        hold runs them) or another thread is running them (it runs these too)."""
        deferred = self._deferred
        while deferred and not self.lock._is_owned():
            if not self._deferred_lock.acquire(blocking=False):
                return
            try:
                while deferred:
                    func, args = deferred.popleft()
                    try:
                        func(*args)
                    except Exception:
                        sys.excepthook(*sys.exc_info())
            finally:
                self._deferred_lock.release()
            # Checked again: a thread may have deferred more and left while we held it.

    def workers(self) -> list:
        """The live local workers, as the standard pool's ``_pool`` lists them: ``Process``
        objects, or threads. A cluster engine has none here."""
        return []

    def close(self) -> None:
        """Accept no more work; finish what was accepted (see the states above)."""
        with self.lock:
            if self.state == RUN:
                self.state = CLOSE
            self.wake()

    def terminate(self) -> None:
        """Stop now; the engine fails whatever is pending when it stops its workers."""
        with self.lock:
            self.state = TERMINATE
            self.wake()

    # -- callers' side --------------------------------------------------------------

    def check_running(self) -> None:
        if self.state != RUN:
            raise ValueError("Pool not running")

    def submit(self, job) -> None:
        """Queue a new job. Raises ``ValueError("Pool not running")`` after close/terminate."""
        with self.lock:
            self.check_running()
            if job.lazy:
                self.lazy_open.add(job)
            if job.buffer:
                self._queue(job)

    def add_items(self, job, start: int, items: list) -> None:
        """More input of a lazy job (read by its consumer or feeder), ``start`` its first
        index."""
        with self.lock:
            if self.state == TERMINATE:
                exc = PoolTerminatedError("pool terminated")
                job.fail_chunk(start, len(items), exc)
                return
            if not job.buffer:
                job.buffer.next_index = start
            job.buffer.extend(items)
            self._queue(job)

    def source_done(self, job) -> None:
        """A lazy job reads no more input (it may end after its last outcome came)."""
        with self.lock:
            self.lazy_open.discard(job)
            bar = job.progress
            if bar is not None and job.finished():
                self.defer(bar.close)
                job.progress = None
            self.wake()

    def _queue(self, job) -> None:
        if not job.queued and job.buffer:
            job.queued = True
            self.ready.append(job)
            self.wake()

    # -- engine side ----------------------------------------------------------------

    def take_chunk(self, workers: int, timed_ok: bool, limit: int | None):
        """The next chunk to send as ``(job, start, items)``, or None.

        ``timed_ok``: the worker is idle, so a job with a per-task timeout may go to it
        (a timed task must start when it is sent). ``limit`` caps the items (the cluster
        engine merges chunks up to its target).
        """
        with self.lock:
            ready = self.ready
            while ready:
                job = ready[0]
                if job.done or not job.buffer:
                    ready.popleft()
                    job.queued = False
                    continue
                if job.timed and not timed_ok:
                    return None
                if not job.claim():
                    ready.popleft()
                    job.queued = False
                    continue
                size = job.next_size(workers)
                if limit is not None and size > limit:
                    size = limit
                start, items = job.take(size)
                if not job.buffer:
                    ready.popleft()
                    job.queued = False
                self.in_flight += len(items)
                return job, start, items
            return None

    def cancel(self, job, exc: BaseException) -> bool:
        """Cancel ``job`` for its caller: resolve it with ``exc`` (``ApplyResult.cancel``).

        Its unsent items are dropped here. If some were sent already, only an engine that
        ``kills_workers`` accepts: it is woken to kill the workers running them.
        """
        with self.lock:
            if job.done:
                return False
            sent = job.buffer.next_index > 0
            if sent and not self.kills_workers:
                return False
            self.tasks_failed += len(job.buffer)
            job.buffer.clear()
            job.cancel_requested = True
            job.fail_chunk(0, 1, exc)
            if sent:
                self.cancelled_any = True
                self.wake()
        self.run_deferred()  # its error_callback
        return True

    def drop_unsent(self, job) -> None:
        """Drop ``job``'s items not sent yet; the items running finish (``IMapJob.abandon``)."""
        with self.lock:
            self.lazy_open.discard(job)
            self.tasks_failed += len(job.buffer)
            job.buffer.clear()
            job.done = True  # nor are chunks of it that a dead worker held sent again
            self.wake()

    def cancel_pending(self) -> None:
        """Cancel the futures of jobs not sent yet (``shutdown(cancel_futures=True)``)."""
        futures = []
        with self.lock:  # no longer sent; cancelled below, where the user's done
            for job in self.ready:  # callbacks may run (never under the lock)
                future = getattr(job, "future", None)
                if future is not None and not job.done and not future.running():
                    job.done = True
                    futures.append(future)
        for future in futures:
            future.cancel()

    def has_unsent(self) -> bool:
        with self.lock:
            return any(job.buffer and not job.done for job in self.ready) or bool(self.lazy_open)

    def outcome(self, job, start: int, values: list, errors: list | None, seconds: float):
        """Record a chunk's outcome and hand it to its job (engine side).

        The job's callbacks run when the caller does not hold the lock: here, or at the
        end of the caller's own hold (``run_deferred``).
        """
        with self.lock:
            failed = len(errors) if errors else 0
            self.in_flight -= len(values)
            self.tasks_done += len(values) - failed
            self.tasks_failed += failed
            if seconds:
                job.measure(len(values), seconds)
            job.deliver(start, values, errors)
            bar = job.progress
            if bar is not None:
                self.defer(bar.update, len(values))
                if job.done or (job.lazy and job.finished()):
                    self.defer(bar.close)
                    job.progress = None
        self.run_deferred()

    def fail_pending(self, exc: BaseException) -> None:
        """Fail every job's unsent items and stop lazy jobs from reading more."""
        with self.lock:
            jobs = list(self.ready) + list(self.lazy_open)
            self.ready.clear()
            for job in jobs:
                job.queued = False
                if job.lazy:
                    job.close_source(exc)
                while job.buffer and not job.done:
                    start, items = job.take(len(job.buffer))
                    self.tasks_failed += len(items)
                    job.fail_chunk(start, len(items), exc)
        self.run_deferred()

    def stats(self, workers: tuple) -> PoolStats:
        with self.lock:
            return PoolStats(
                workers=workers,
                tasks_done=self.tasks_done,
                tasks_failed=self.tasks_failed,
                in_flight=self.in_flight,
                workers_replaced=self.workers_replaced,
                busy_seconds=dict(self.busy),
            )
