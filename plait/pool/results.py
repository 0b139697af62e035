"""Jobs: what a pool call submits, how it is cut into chunks, and how its result is waited for.

Theory of operation
-------------------
Every call (``apply_async``, ``map_async``, ``imap``, ...) makes one *job*, which is also
the object the caller holds (``AsyncResult``, ``MapResult``, ``IMapIterator``), as in
``multiprocessing.pool``. A job has a *buffer* of items not yet sent (``Buffer``); the
engine (``scheduler`` for processes, ``threadpool`` for threads) cuts chunks from it with
``take`` when a worker has room, and reports back with ``deliver`` (values and per-item
errors of a chunk) or ``fail_chunk`` (the whole chunk: worker lost, timeout, terminate).
All of that runs under the engine's lock; waiting callers sleep on the job's own
condition.

Chunk size: a fixed ``chunksize`` is honoured. Without one the job measures: the first
chunks hold one item (unless the engine measured the same function before: ``costs``),
and each delivery adds the compute seconds the worker measured, so
later chunks hold about ``TARGET_SECONDS`` of work, never more than a fair share of
what is left (so the tail is balanced) unless that is under ``MIN_SECONDS`` of work,
and at most ``MAX_CHUNK`` items, or ``CHUNK_BYTES`` when items are big (as
``worker.nbytes`` of the first one says: arrays and bytes, which go out of band, counted
by their buffer, also when they view memory they do not own). A job with a per-task
``timeout`` always sends single items (the deadline is per task).

Laziness (``imap``): the input iterator is read by the *consumer's* thread, in
``__next__``, up to ``window()`` items ahead of what it has consumed: an endless
generator holds a bounded number of items, and a generator that blocks never blocks the
engine. The window follows the chunk size, so adaptive chunks keep every worker fed.
An input iterator that raises fails the item at that position, and the iteration ends
after it, as in ``multiprocessing``. With a fixed ``chunksize`` the input is read in whole
chunks and an input that raises inside a chunk fails that chunk: its items read before
the error never run and the error takes their place (``multiprocessing`` cuts chunks as
it reads, and the same program sees the same sequence on both).

A ``MapResult`` resolves on its first failed item (the standard behaviour): its other
chunks still unsent are dropped.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from plait.pool.errors import TimeoutError
from plait.pool.worker import APPLY, MAP, STAR, nbytes

__all__ = [
    "AsyncResult",
    "ApplyResult",
    "FutureJob",
    "MapResult",
    "IMapIterator",
    "IMapUnorderedIterator",
    "TaskTimeout",
    "check_buffersize",
    "check_task_timeout",
    "job_counter",
]

TARGET_SECONDS = 0.01
MIN_SECONDS = 0.001
CHUNK_BYTES = 8 << 20  # big items (arrays, bytes) travel a few per chunk: no huge message
MAX_CHUNK = 100_000
MAX_IMAP_CHUNK = 4096
MIN_WINDOW = 1024  # items an imap reads ahead of its consumer, at the least

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


class Buffer:
    """Items not sent yet, as whole lists: cutting a chunk is a slice, not a loop per item.

    Items enter at the end in input order and leave from the front, so the index of an
    item is the count of items that left before it (``next_index``).
    """

    __slots__ = ("_segments", "_offset", "_len", "next_index")

    def __init__(self) -> None:
        self._segments: deque[list] = deque()
        self._offset = 0  # items of the first segment already taken
        self._len = 0
        self.next_index = 0

    def __len__(self) -> int:
        return self._len

    def extend(self, items: list) -> None:
        if items:
            self._segments.append(items)
            self._len += len(items)

    def take(self, size: int) -> tuple[int, list]:
        """Remove up to ``size`` items from the front; return (index of the first, items)."""
        segments = self._segments
        start = self.next_index
        out: list | None = None
        while size > 0 and segments:
            seg = segments[0]
            offset = self._offset
            avail = len(seg) - offset
            if avail <= size:
                piece = seg[offset:] if offset or out is not None else seg
                segments.popleft()
                self._offset = 0
            else:
                piece = seg[offset : offset + size]
                self._offset = offset + size
            if out is None:
                out = piece
            else:
                out.extend(piece)
            size -= len(piece)
        out = out if out is not None else []
        self._len -= len(out)
        self.next_index += len(out)
        return start, out

    def first(self) -> Any:
        """The item at the front (the buffer must not be empty)."""
        return self._segments[0][self._offset]

    def clear(self) -> None:
        self.next_index += self._len
        self._segments.clear()
        self._offset = 0
        self._len = 0


class _Job:
    """The part every job shares: its function, the unsent buffer, chunk sizing."""

    kind = MAP
    lazy = False

    def __init__(self, engine, func_bytes: bytes, func, chunksize, timeout) -> None:
        self._engine = engine
        self.id = next(job_counter)
        self.func_bytes = func_bytes
        self.func = func
        # Per task (a TaskTimeout, or None): a timed job's tasks travel alone.
        self.timed = timeout is not None
        self.timeout = timeout.hard if self.timed else None
        self.soft_timeout = timeout.soft if self.timed else None
        self.chunksize = 1 if self.timed else chunksize
        self.buffer = Buffer()
        self.queued = False
        self.done = False
        self.cancel_requested = False  # by its caller: a worker still running it gets killed
        self.progress = None  # a tqdm bar, advanced by the engine
        self._seconds = 0.0
        self._measured = 0
        self.cost_key = func_bytes or func  # thread pools send no bytes
        self._item_bytes: int | None = None  # size of the first item, for big items
        self._lock = threading.Lock()  # taken directly on hot paths: a C call, not Python's
        self._cond = threading.Condition(self._lock)

    # -- engine side (under the engine's lock) ---------------------------------------

    def next_size(self, workers: int) -> int:
        if self.chunksize is not None:
            return self.chunksize
        per_item = self.per_item()
        if per_item is None:
            return 1
        per_item = max(per_item, 1e-9)
        limit = MAX_IMAP_CHUNK if self.lazy else MAX_CHUNK
        if self._item_bytes is None and self.buffer:
            self._item_bytes = max(1, nbytes(self.buffer.first()))
        if self._item_bytes:
            limit = min(limit, max(1, CHUNK_BYTES // self._item_bytes))
        size = min(int(TARGET_SECONDS / per_item), limit)
        if not self.lazy:
            # Balance the tail: a fair share of what is left, but never a chunk of less
            # than MIN_SECONDS of work, below which splitting costs more than it evens.
            share = math.ceil(len(self.buffer) / (2 * workers))
            size = min(size, max(share, int(MIN_SECONDS / per_item)))
        return max(1, size)

    def take(self, size: int) -> tuple[int, list]:
        """Cut up to ``size`` buffered items; return (index of the first, items)."""
        return self.buffer.take(size)

    def per_item(self) -> float | None:
        """Measured seconds per item: this job's, else the last job's of the same function."""
        if self._measured:
            return self._seconds / self._measured
        return self._engine.costs.get(self.cost_key)

    def estimate(self, count: int) -> float | None:
        """Seconds ``count`` items should take, from what was measured (None: unknown)."""
        per_item = self.per_item()
        return None if per_item is None else count * per_item

    def claim(self) -> bool:
        """Whether the job may still be sent (False: its caller cancelled it)."""
        return True

    def measure(self, count: int, seconds: float) -> None:
        self._measured += count
        self._seconds += seconds
        self._engine.costs[self.cost_key] = self._seconds / self._measured

    def deliver(self, start: int, values: list, errors: list | None) -> None:
        raise NotImplementedError

    def fail_chunk(self, start: int, count: int, exc: BaseException) -> None:
        self.deliver(start, [None] * count, [(i, exc) for i in range(count)])


class ApplyResult(_Job):
    """The result of ``apply_async``: ``get``, ``wait``, ``ready``, ``successful``."""

    kind = APPLY

    def __init__(self, engine, func_bytes, func, args, kwds, callback, error_callback, timeout):
        super().__init__(engine, func_bytes, func, 1, timeout)
        self._callback = callback
        self._error_callback = error_callback
        self._success: bool | None = None
        self._value: Any = None
        self._ready = False  # settled and its callback has run: what callers wait for
        self.buffer.extend([(tuple(args), dict(kwds or {}))])

    def ready(self) -> bool:
        """Whether the call has completed and its callback has run (never blocks)."""
        return self._ready

    def successful(self) -> bool:
        """Whether the call completed without raising; ``ValueError`` if not ready yet."""
        if not self._ready:
            raise ValueError(f"{self!r} not ready")
        return bool(self._success)

    def cancel(self) -> bool:
        """Stop the call; return whether it was cancelled. Never blocks.

        A call no worker took yet is dropped. One a worker process runs already is
        stopped by killing that worker (the pool starts a replacement); chunks the
        worker held but had not started go to other workers. A cancelled call's
        ``get()`` raises ``concurrent.futures.CancelledError`` and its
        ``error_callback`` gets that error. Returns ``False`` if the call has finished,
        or if it runs already on a worker that cannot be killed (a thread).
        """
        return self._engine.cancel(self, concurrent.futures.CancelledError(f"{self!r} cancelled"))

    def cancelled(self) -> bool:
        """Whether the call was cancelled (``cancel`` returned True); never blocks.

        A method, as ``concurrent.futures.Future.cancelled``.
        """
        return self.cancel_requested

    def wait(self, timeout: float | None = None) -> None:
        """Block until the result is ready or ``timeout`` seconds pass (``None``: no limit)."""
        timeout = check_timeout(timeout)
        with self._cond:
            self._cond.wait_for(lambda: self._ready, timeout)

    def get(self, timeout: float | None = None) -> Any:
        """Return the result; re-raise the task's exception (remote traceback as its cause).

        Blocks until ready, or ``timeout`` seconds: then raises ``TimeoutError``
        (``multiprocessing.TimeoutError`` to ``plait.multiprocessing`` users). A task
        whose worker died raises ``WorkerLostError``; one that overran its per-task
        timeout, ``TimeoutError``; a cancelled one, ``concurrent.futures.CancelledError``.
        """
        self.wait(timeout)
        if not self._ready:
            raise TimeoutError(f"result not ready after {timeout} s")
        if self._success:
            return self._value
        raise self._value

    def _resolve(self, success: bool, value: Any) -> None:
        """Settle the job (under the engine's lock). Its callback, if any, runs later,
        outside the lock (``Engine.defer``), and the result is ready once it has run,
        as in ``multiprocessing.pool``."""
        self._success, self._value = success, value
        self.done = True
        callback = self._callback if success else self._error_callback
        if callback is None:
            self._set_ready()
        else:
            self._engine.defer(self._call_back, callback, value)

    def _call_back(self, callback: Callable[[Any], object], value: Any) -> None:
        try:
            callback(value)
        finally:
            self._set_ready()

    def _set_ready(self) -> None:
        with self._cond:
            self._ready = True
            self._cond.notify_all()

    def deliver(self, start, values, errors):
        if self.done:  # cancelled: the late outcome of its killed worker
            return
        if errors:
            self._resolve(False, errors[0][1])
        else:
            self._resolve(True, values[0])

    def __repr__(self) -> str:
        state = "ready" if self._ready else "pending"
        return f"<{type(self).__name__} job={self.id} {state}>"


AsyncResult = ApplyResult


class FutureJob(ApplyResult):
    """An ``apply`` whose outcome settles a ``concurrent.futures.Future`` (executors)."""

    future = None

    def claim(self) -> bool:
        if self.future.set_running_or_notify_cancel():
            return True
        self.done = True  # cancelled: never sent, nothing to settle
        return False


class MapResult(ApplyResult):
    """The result of ``map_async``/``starmap_async``: a list in input order."""

    def __init__(
        self,
        engine,
        func_bytes,
        func,
        items: list,
        star,
        chunksize,
        callback,
        error_callback,
        timeout,
    ):
        _Job.__init__(self, engine, func_bytes, func, chunksize, timeout)
        self.kind = STAR if star else MAP
        self._callback = callback
        self._error_callback = error_callback
        self._success = None
        self._ready = False
        self.remaining = len(items)  # items whose outcome is not known yet
        self._values: list = [None] * len(items)
        self.buffer.extend(items)
        if not items:
            self._success, self._value, self.done, self._ready = True, [], True, True

    def deliver(self, start, values, errors):
        if self.done:
            return
        if errors:
            self.buffer.clear()
            self.remaining = 0
            self._resolve(False, errors[0][1])
            return
        self._values[start : start + len(values)] = values
        self.remaining -= len(values)
        if self.remaining == 0:
            self._resolve(True, self._values)


class IMapIterator(_Job):
    """The iterator ``imap`` returns: results in input order, input read lazily.

    ``next(timeout)`` raises ``TimeoutError`` when the next result is not ready in time,
    re-raises a failed item's exception (the iteration then goes on with the next item).
    """

    lazy = True
    _ordered = True

    def __init__(
        self,
        engine,
        func_bytes,
        func,
        iterable: Iterable,
        star,
        chunksize,
        timeout,
        workers: int,
        buffersize: int | None = None,
    ):
        super().__init__(engine, func_bytes, func, chunksize, timeout)
        self.kind = STAR if star else MAP
        self._buffersize = buffersize  # tasks read ahead of the consumer, at most
        self._source: Iterator | None = iter(iterable)
        self._source_lock = threading.Lock()
        self._workers = workers
        self._pulled = 0  # items read from the source
        self._yielded = 0  # results handed to the consumer
        self._delivered = 0  # outcomes known
        # Outcomes are kept as their chunks arrive, (values, {position: exception} or
        # None): no object per item. The consumer walks through one chunk at a time.
        self._chunks: dict[int, tuple[list, dict | None]] = {}  # ordered: by first index
        self._arrived: deque = deque()  # unordered: chunks in arrival order
        self._index = 0  # ordered: the index of the first item of the next chunk
        self._values: list = []  # the chunk being consumed...
        self._failed: dict | None = None
        self._pos = 0  # ...and the position of its next item
        self._low_water = MIN_WINDOW  # read more input once this little is left ahead

    def window(self) -> int:
        if self._buffersize is not None:
            return self._buffersize * (self.chunksize or 1)
        size = self.next_size(self._workers)
        return max(MIN_WINDOW, size * self._workers * 4)

    def top_up(self) -> None:
        """Read the source until ``window()`` items are pulled but not yet consumed.

        Reads only once less than half the window is left, so the source is read (and
        the engine woken) in batches, not once per consumed item.
        """
        if self._source is None:
            self._low_water = -1  # nothing more to read: next() stops checking
            return
        window = self.window()
        self._low_water = window // 2
        ahead = self._pulled - self._yielded
        if ahead > self._low_water:
            return
        self._pull(window - ahead)

    def drain(self) -> None:
        """At ``Pool.close``: read the rest of the source now, as the standard pool does.

        A job with a ``buffersize`` reads no more (its input may be endless): its consumer
        gets the results of what was read, then ``RuntimeError``.
        """
        if self._buffersize is None:
            self._pull(None)
            return
        with self._source_lock:
            self.close_source(
                RuntimeError("the pool was closed: the rest of the input was not read (buffersize)")
            )
        self._engine.source_done(self)

    def _pull(self, want: int | None) -> None:
        with self._source_lock:
            if self._source is None:
                return
            start = self._pulled
            items: list = []
            failure = None
            chunksize = self.chunksize
            if want is not None and chunksize is not None:
                want = -(-want // chunksize) * chunksize  # whole chunks: see the docstring
            try:
                items.extend(itertools.islice(self._source, want))
            except Exception as exc:
                failure = exc
                if chunksize is not None:
                    del items[len(items) - len(items) % chunksize :]
            end = start + len(items)
            if failure is not None or want is None or len(items) < want:
                self._source = None
            self._pulled = end
            if failure is not None:
                self._pulled = end + 1
                self._store(end, False, failure)
            if items:
                self._engine.add_items(self, start, items)
            if self._source is None:
                self._engine.source_done(self)

    def close_source(self, exc: BaseException) -> None:
        """Stop reading input (the pool was terminated): ``exc`` ends the iteration."""
        if self._source is None:
            return
        self._source = None
        index = self._pulled
        self._pulled = index + 1
        self._store(index, False, exc)

    def __iter__(self) -> IMapIterator:
        return self

    def next(self, timeout: float | None = None) -> Any:
        """The next result; see the class docstring for what it raises."""
        if timeout is not None:
            timeout = check_timeout(timeout)
        if self._pulled - self._yielded <= self._low_water:
            self.top_up()
        with self._lock:
            if self._pos >= len(self._values) and not self._next_chunk():
                self._wait_chunk(timeout)
            pos = self._pos
            self._pos = pos + 1
            self._yielded += 1
            value = self._values[pos]
            failed = self._failed
        if self._pulled - self._yielded <= self._low_water:
            self.top_up()
        if failed is not None and pos in failed:
            raise failed[pos]
        return value

    __next__ = next

    def _wait_chunk(self, timeout: float | None) -> None:
        """Wait (the lock held) until a next chunk is the one consumed; see ``next``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._next_chunk():
            if self._source is None and self._yielded >= self._pulled:
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
        if self._ordered:
            chunk = self._chunks.pop(self._index, None)
            if chunk is None:
                return False
            self._index += len(chunk[0])
        elif self._arrived:
            chunk = self._arrived.popleft()
        else:
            return False
        self._values, self._failed = chunk
        self._pos = 0
        return True

    def finished(self) -> bool:
        """Whether all input was read and every outcome is known."""
        return self._source is None and self._delivered >= self._pulled

    def _store(self, index: int, success: bool, value: Any) -> None:
        if success:
            self.deliver(index, [value], None)
        else:
            self.deliver(index, [None], [(0, value)])

    def deliver(self, start, values, errors):
        chunk = (values, dict(errors) if errors else None)
        with self._cond:
            self._delivered += len(values)
            if self._ordered:
                self._chunks[start] = chunk
            else:
                self._arrived.append(chunk)
            self._cond.notify()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} job={self.id} yielded={self._yielded}>"


class IMapUnorderedIterator(IMapIterator):
    """The iterator ``imap_unordered`` returns: results as they complete."""

    _ordered = False
