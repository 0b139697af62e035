"""Results: what a caller holds for a pool call, and the checks of the calls' arguments.

Theory of operation
-------------------
A result is the caller's view of one *job* (``jobs``), which the engine owns: it reads
the job's outcome, waits on the job's condition and asks the engine to cancel the job,
and has nothing else: the standard interface of ``multiprocessing.pool``
(``AsyncResult``/``ApplyResult`` and ``MapResult``: ``ready``, ``successful``, ``wait``,
``get``; ``IMapIterator``/``IMapUnorderedIterator``: ``next``, ``__next__``,
``__iter__``), plus ``cancel`` and ``cancelled`` on ``AsyncResult``, as on
``concurrent.futures.Future``. The job holds no reference back, so a result its caller
drops is freed at once, and with it a lazy job nothing else holds.

An ``imap`` iterator is the consumer of its job's outcomes: it counts what it took
(``IMapJob.consumed``), asks the job for more input when at most ``low_water`` items
are read ahead of that (``IMapJob.top_up``: that never blocks on the input, which a
feeder thread reads unless it is held in memory), and walks through the job's arrived
chunks one at a time, so a result costs no lock per item. ``next(timeout)`` raises
``TimeoutError`` when the next result is not ready in time and re-raises a failed
item's exception (the iteration then goes on with the next item). An iterator dropped
before its input was read stops the reading (``IMapJob.consumer_gone``).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import math
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from plait.pool.errors import TimeoutError

if TYPE_CHECKING:
    from plait.pool.jobs import ApplyJob, IMapJob, MapJob

__all__ = [
    "AsyncResult",
    "ApplyResult",
    "MapResult",
    "IMapIterator",
    "IMapUnorderedIterator",
    "TaskTimeout",
    "check_buffersize",
    "check_task_timeout",
    "check_timeout",
    "check_wait_timeout",
    "job_counter",
]

job_counter = itertools.count()  # the ids of jobs (the standard pool's name)


def check_timeout(timeout: float | None, what: str = "timeout") -> float | None:
    """Return ``timeout`` as a float, or raise ``ValueError``/``TypeError`` naming it."""
    if timeout is None:
        return None
    if not isinstance(timeout, int | float) or isinstance(timeout, bool):
        raise TypeError(f"{what} must be a number of seconds or None, not {timeout!r}")
    if timeout < 0 or math.isnan(timeout):
        raise ValueError(f"{what} must be a non-negative number of seconds, not {timeout!r}")
    return float(timeout)


def check_wait_timeout(timeout: float | None) -> float | None:
    """The ``timeout`` of a call that waits (``get``, ``wait``, ``next``, ``join``): as
    ``check_timeout``, except that a negative one means "do not wait", as in the standard
    library's waits (a deadline computed as ``deadline - now`` may have passed already)."""
    if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout < 0:
        return 0.0
    return check_timeout(timeout)


class TaskTimeout(NamedTuple):
    """A task's limits in seconds: at ``soft`` it gets ``SoftTimeoutError`` raised inside
    it, at ``hard`` its worker is killed (either may be None, not both)."""

    soft: float | None
    hard: float | None


def check_task_timeout(timeout: Any) -> TaskTimeout | None:
    """A per-task ``timeout=``: seconds (the hard limit), ``(soft, hard)`` or None.

    Raises ``TypeError``/``ValueError`` naming what is wrong, also for a soft limit past
    the hard one (the worker would be killed before the task is told).
    """
    if timeout is None:
        return None
    if not isinstance(timeout, tuple):
        return TaskTimeout(None, check_timeout(timeout))
    if len(timeout) != 2:
        raise TypeError(f"timeout must be seconds or (soft, hard), not {timeout!r}")
    soft = check_timeout(timeout[0], "soft timeout")
    hard = check_timeout(timeout[1], "hard timeout")
    if soft is None and hard is None:
        return None
    if soft is not None and hard is not None and soft > hard:
        raise ValueError(f"the soft timeout ({soft} s) is past the hard one ({hard} s)")
    return TaskTimeout(soft, hard)


def check_buffersize(buffersize: Any) -> int | None:
    """``buffersize`` of ``imap``/``Executor.map``, checked as the standard library does."""
    if buffersize is not None and (not isinstance(buffersize, int) or isinstance(buffersize, bool)):
        raise TypeError("buffersize must be an integer or None")
    if buffersize is not None and buffersize < 1:
        raise ValueError("buffersize must be None or > 0")
    return buffersize


class ApplyResult:
    """The result of ``apply_async``: ``get``, ``wait``, ``ready``, ``successful``,
    ``cancel``, ``cancelled``."""

    def __init__(self, job: ApplyJob | MapJob) -> None:
        self._job = job

    def ready(self) -> bool:
        """Whether the call has completed and its callback has run (never blocks)."""
        return self._job.ready

    def successful(self) -> bool:
        """Whether the call completed without raising; ``ValueError`` if not ready yet."""
        job = self._job
        if not job.ready:
            raise ValueError(f"{self!r} not ready")
        return bool(job.success)

    def cancel(self) -> bool:
        """Stop the call; return whether it was cancelled. Never blocks.

        A call no worker took yet is dropped. One a worker process runs already is
        stopped by killing that worker (the pool starts a replacement); chunks the
        worker held but had not started go to other workers. A cancelled call's
        ``get()`` raises ``concurrent.futures.CancelledError`` and its
        ``error_callback`` gets that error. Returns ``False`` if the call has finished,
        or if it runs already on a worker that cannot be killed (a thread).
        """
        job = self._job
        return job.engine.cancel(job, concurrent.futures.CancelledError(f"{self!r} cancelled"))

    def cancelled(self) -> bool:
        """Whether the call was cancelled (``cancel`` returned True); never blocks.

        A method, as ``concurrent.futures.Future.cancelled``.
        """
        return self._job.cancel_requested

    def wait(self, timeout: float | None = None) -> None:
        """Block until the result is ready or ``timeout`` seconds pass (``None``: no limit;
        negative: do not wait)."""
        timeout = check_wait_timeout(timeout)
        job = self._job
        with job.cond:
            job.cond.wait_for(lambda: job.ready, timeout)

    def get(self, timeout: float | None = None) -> Any:
        """Return the result; re-raise the task's exception (remote traceback as its cause).

        Blocks until ready, or ``timeout`` seconds: then raises ``TimeoutError``
        (``multiprocessing.TimeoutError`` to ``plait.multiprocessing`` users). A task
        whose worker died raises ``WorkerLostError``; one that overran its per-task
        timeout, ``TimeoutError``; a cancelled one, ``concurrent.futures.CancelledError``.
        """
        self.wait(timeout)
        job = self._job
        if not job.ready:
            raise TimeoutError(f"result not ready after {timeout} s")
        if job.success:
            return job.value
        raise job.value

    def __repr__(self) -> str:
        state = "ready" if self._job.ready else "pending"
        return f"<{type(self).__name__} job={self._job.id} {state}>"


AsyncResult = ApplyResult


class MapResult(ApplyResult):
    """The result of ``map_async``/``starmap_async``: a list in input order."""


class IMapIterator:
    """The iterator ``imap`` returns: results in input order, input read lazily.

    ``next(timeout)`` raises ``TimeoutError`` when the next result is not ready in time,
    re-raises a failed item's exception (the iteration then goes on with the next item).
    """

    def __init__(self, job: IMapJob) -> None:
        self._job = job
        self._lock = job.lock  # the lock of job.cond, taken directly: a C call per item
        self._cond = job.cond
        self._index = 0  # ordered: the index of the first item of the next chunk
        self._values: list = []  # the chunk being consumed...
        self._failed: dict | None = None
        self._pos = 0  # ...and the position of its next item

    def __iter__(self) -> IMapIterator:
        return self

    def next(self, timeout: float | None = None) -> Any:
        """The next result; see the class docstring for what it raises."""
        if timeout is not None:
            timeout = check_wait_timeout(timeout)
        job = self._job
        if job.pulled - job.consumed <= job.low_water:
            job.top_up()
        with self._lock:
            if self._pos >= len(self._values) and not self._next_chunk():
                self._wait_chunk(timeout)
            pos = self._pos
            self._pos = pos + 1
            job.consumed += 1
            value = self._values[pos]
            failed = self._failed
        if job.pulled - job.consumed <= job.low_water:
            job.top_up()
        if failed is not None and pos in failed:
            raise failed[pos]
        return value

    __next__ = next

    def _wait_chunk(self, timeout: float | None) -> None:
        """Wait (the lock held) until a next chunk is the one consumed; see ``next``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        job = self._job
        while not self._next_chunk():
            if job.source is None and job.consumed >= job.pulled:
                raise StopIteration
            if deadline is None:
                self._cond.wait()
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no result within {timeout} s")
                self._cond.wait(left)

    def _next_chunk(self) -> bool:
        """Make the next chunk to arrive (in order, or unordered) the one consumed."""
        job = self._job
        if job.ordered:
            chunk = job.chunks.pop(self._index, None)
            if chunk is None:
                return False
            self._index += len(chunk[0])
        elif job.arrived:
            chunk = job.arrived.popleft()
        else:
            return False
        self._values, self._failed = chunk
        self._pos = 0
        return True

    def __del__(self) -> None:
        self._job.consumer_gone()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} job={self._job.id} yielded={self._job.consumed}>"


class IMapUnorderedIterator(IMapIterator):
    """The iterator ``imap_unordered`` returns: results as they complete."""
