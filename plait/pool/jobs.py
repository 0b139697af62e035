"""Jobs: the engine's side of a pool call: its items, how they are cut into chunks, its outcome.

Theory of operation
-------------------
Every call (``apply_async``, ``map_async``, ``imap``, an executor's ``submit``) makes one
*job*, which the engine (``scheduler`` for processes, ``threadpool`` for threads, the
cluster engine) owns. The caller holds a thin result (``results``: ``AsyncResult``,
``MapResult``, ``IMapIterator``) that reads the job's outcome and never exposes the
methods below; an executor's job settles a ``concurrent.futures.Future`` instead, and
has no result of its own.

A job has a *buffer* of items not yet sent (``Buffer``); the engine cuts chunks from it
with ``take`` when a worker has room, and reports back with ``deliver`` (values and
per-item errors of a chunk) or ``fail_chunk`` (the whole chunk: worker lost, timeout,
terminate). All of that runs under the engine's lock; callers waiting for an outcome
sleep on the job's own condition (``cond``).

Chunk size: a fixed ``chunksize`` is honoured. Without one the job measures: the first
chunks hold one item (unless the engine measured the same function before: ``costs``),
and each delivery adds the compute seconds the worker measured, so
later chunks hold about ``TARGET_SECONDS`` of work, never more than a fair share of
what is left (so the tail is balanced) unless that is under ``MIN_SECONDS`` of work,
and at most ``MAX_CHUNK`` items, or ``CHUNK_BYTES`` when items are big (as
``worker.nbytes`` of the first one says: arrays and bytes, which go out of band, counted
by their buffer, also when they view memory they do not own). A job with a per-task
``timeout`` always sends single items (the deadline is per task).

Outcomes: the outcome of an ``apply_async`` or a map (``Outcome``, a part of ``ApplyJob``
and ``MapJob``) is settled under the engine's lock; its callback, if any, runs later,
outside the lock (``Engine.defer``), and the outcome is *ready* once the callback has
run, as in ``multiprocessing.pool``. A map (``MapJob``) resolves on its first failed
item (the standard behaviour): its other chunks still unsent are dropped.

Laziness (``IMapJob``): the input iterator is read by the *consumer's* thread, when its
iterator asks for the next result, up to ``window()`` items ahead of what it has
consumed: an endless generator holds a bounded number of items, and a generator that
blocks never blocks the engine. The window follows the chunk size, so adaptive chunks
keep every worker fed. An input iterator that raises fails the item at that position,
and the iteration ends after it, as in ``multiprocessing``. With a fixed ``chunksize``
the input is read in whole chunks and an input that raises inside a chunk fails that
chunk: its items read before the error never run and the error takes their place
(``multiprocessing`` cuts chunks as it reads, and the same program sees the same
sequence on both). Outcomes are kept as their chunks arrive, ``(values, {position:
exception} or None)``, no object per item: by first index for an ordered iterator, in
arrival order for an unordered one.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from plait.pool.results import TaskTimeout, job_counter
from plait.pool.worker import APPLY, MAP, STAR, nbytes

__all__ = [
    "ApplyJob",
    "Buffer",
    "CallJob",
    "FutureJob",
    "IMapJob",
    "Job",
    "MapJob",
    "Outcome",
]

TARGET_SECONDS = 0.01
MIN_SECONDS = 0.001
CHUNK_BYTES = 8 << 20  # big items (arrays, bytes) travel a few per chunk: no huge message
MAX_CHUNK = 100_000
MAX_IMAP_CHUNK = 4096
MIN_WINDOW = 1024  # items an imap reads ahead of its consumer, at the least


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


class Job:
    """What every job shares: its function, the unsent buffer, chunk sizing.

    Everything here runs under the engine's lock.
    """

    kind = MAP
    lazy = False

    def __init__(
        self, engine, func_bytes: bytes, func, chunksize: int | None, timeout: TaskTimeout | None
    ) -> None:
        self.engine = engine
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
        return self.engine.costs.get(self.cost_key)

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
        self.engine.costs[self.cost_key] = self._seconds / self._measured

    def deliver(self, start: int, values: list, errors: list | None) -> None:
        """The outcome of the items from ``start`` on: ``values``, and ``errors`` as
        ``(position in values, exception)`` pairs or None."""
        raise NotImplementedError

    def fail_chunk(self, start: int, count: int, exc: BaseException) -> None:
        self.deliver(start, [None] * count, [(i, exc) for i in range(count)])


class Outcome:
    """What a result reads: ``success`` and ``value``, and ``ready``, which turns true
    under ``cond`` once the outcome is settled and its callback has run (see the module
    essay). A part of a ``Job`` (it uses the job's ``engine`` and ``done``)."""

    def _init_outcome(
        self,
        callback: Callable[[Any], object] | None,
        error_callback: Callable[[BaseException], object] | None,
    ) -> None:
        self._callback = callback
        self._error_callback = error_callback
        self.success: bool | None = None
        self.value: Any = None
        self.ready = False
        self.lock = threading.Lock()  # taken directly on hot paths: a C call, not Python's
        self.cond = threading.Condition(self.lock)

    def resolve(self, success: bool, value: Any) -> None:
        """Settle the outcome; its callback, if any, runs later, outside the lock."""
        self.success, self.value = success, value
        self.done = True
        callback = self._callback if success else self._error_callback
        if callback is None:
            self._set_ready()
        else:
            self.engine.defer(self._call_back, callback, value)

    def _call_back(self, callback: Callable[[Any], object], value: Any) -> None:
        try:
            callback(value)
        finally:
            self._set_ready()

    def _set_ready(self) -> None:
        with self.cond:
            self.ready = True
            self.cond.notify_all()


class CallJob(Job):
    """One call, ``func(*args, **kwds)``: its arguments are the buffer's only item; its
    outcome goes to ``resolve``."""

    kind = APPLY

    def __init__(
        self, engine, func_bytes: bytes, func, args: Iterable, kwds: dict | None, timeout
    ) -> None:
        super().__init__(engine, func_bytes, func, 1, timeout)
        self.buffer.extend([(tuple(args), dict(kwds or {}))])

    def resolve(self, success: bool, value: Any) -> None:
        raise NotImplementedError

    def deliver(self, start, values, errors):
        if self.done:  # cancelled: the late outcome of its killed worker
            return
        if errors:
            self.resolve(False, errors[0][1])
        else:
            self.resolve(True, values[0])


class ApplyJob(Outcome, CallJob):
    """``apply_async``: a call whose ``AsyncResult`` reads its ``Outcome``."""

    def __init__(
        self,
        engine,
        func_bytes: bytes,
        func,
        args: Iterable,
        kwds: dict | None,
        callback: Callable[[Any], object] | None,
        error_callback: Callable[[BaseException], object] | None,
        timeout: TaskTimeout | None,
    ) -> None:
        CallJob.__init__(self, engine, func_bytes, func, args, kwds, timeout)
        self._init_outcome(callback, error_callback)


class FutureJob(CallJob):
    """An executor's ``submit``: a call whose outcome settles a ``Future``.

    The future turns running when the call is first sent (``claim``); a future
    cancelled before that is never sent. ``set_result``/``set_exception`` run the
    future's done-callbacks (user code), so they run deferred, outside the lock.
    """

    def __init__(
        self, engine, func_bytes: bytes, func, args: Iterable, kwds: dict | None, future, timeout
    ) -> None:
        super().__init__(engine, func_bytes, func, args, kwds, timeout)
        self.future: concurrent.futures.Future = future

    def claim(self) -> bool:
        if self.future.set_running_or_notify_cancel():
            return True
        self.done = True  # cancelled: never sent, nothing to settle
        return False

    def resolve(self, success: bool, value: Any) -> None:
        self.done = True
        future = self.future
        self.engine.defer(future.set_result if success else future.set_exception, value)


class MapJob(Outcome, Job):
    """``map_async``/``starmap_async``: the outcome is a list in input order."""

    def __init__(
        self,
        engine,
        func_bytes: bytes,
        func,
        items: list,
        star: bool,
        chunksize: int | None,
        callback: Callable[[Any], object] | None,
        error_callback: Callable[[BaseException], object] | None,
        timeout: TaskTimeout | None,
    ) -> None:
        Job.__init__(self, engine, func_bytes, func, chunksize, timeout)
        self._init_outcome(callback, error_callback)
        self.kind = STAR if star else MAP
        self.remaining = len(items)  # items whose outcome is not known yet
        self._values: list = [None] * len(items)
        self.buffer.extend(items)
        if not items:
            self.success, self.value, self.done, self.ready = True, [], True, True

    def deliver(self, start, values, errors):
        if self.done:
            return
        if errors:
            self.buffer.clear()
            self.remaining = 0
            self.resolve(False, errors[0][1])
            return
        self._values[start : start + len(values)] = values
        self.remaining -= len(values)
        if self.remaining == 0:
            self.resolve(True, self._values)


class IMapJob(Job):
    """``imap``/``imap_unordered``: input read lazily, outcomes kept by chunk.

    The consumer (``results.IMapIterator``) reads input through ``top_up`` and takes
    arrived chunks from ``chunks`` (``ordered``) or ``arrived``, under ``cond``.
    """

    lazy = True

    def __init__(
        self,
        engine,
        func_bytes: bytes,
        func,
        iterable: Iterable,
        star: bool,
        chunksize: int | None,
        timeout: TaskTimeout | None,
        workers: int,
        buffersize: int | None,
        ordered: bool,
    ) -> None:
        super().__init__(engine, func_bytes, func, chunksize, timeout)
        self.kind = STAR if star else MAP
        self.ordered = ordered
        self._buffersize = buffersize  # tasks read ahead of the consumer, at most
        self.source: Iterator | None = iter(iterable)
        self._source_lock = threading.Lock()
        self._workers = workers
        self.pulled = 0  # items read from the source
        self._delivered = 0  # outcomes known
        self.low_water = MIN_WINDOW  # read more input once this little is left ahead
        self.chunks: dict[int, tuple[list, dict | None]] = {}  # ordered: by first index
        self.arrived: deque = deque()  # unordered: chunks in arrival order
        self.lock = threading.Lock()  # the consumer takes it directly, once per item
        self.cond = threading.Condition(self.lock)

    def window(self) -> int:
        if self._buffersize is not None:
            return self._buffersize * (self.chunksize or 1)
        size = self.next_size(self._workers)
        return max(MIN_WINDOW, size * self._workers * 4)

    def top_up(self, consumed: int) -> None:
        """Read the source until ``window()`` items are pulled but not yet ``consumed``.

        Reads only once less than half the window is left, so the source is read (and
        the engine woken) in batches, not once per consumed item.
        """
        if self.source is None:
            self.low_water = -1  # nothing more to read: the consumer stops checking
            return
        window = self.window()
        self.low_water = window // 2
        ahead = self.pulled - consumed
        if ahead > self.low_water:
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
        self.engine.source_done(self)

    def _pull(self, want: int | None) -> None:
        with self._source_lock:
            if self.source is None:
                return
            start = self.pulled
            items: list = []
            failure = None
            chunksize = self.chunksize
            if want is not None and chunksize is not None:
                want = -(-want // chunksize) * chunksize  # whole chunks: see the essay
            try:
                items.extend(itertools.islice(self.source, want))
            except Exception as exc:
                failure = exc
                if chunksize is not None:
                    del items[len(items) - len(items) % chunksize :]
            end = start + len(items)
            if failure is not None or want is None or len(items) < want:
                self.source = None
            self.pulled = end
            if failure is not None:
                self.pulled = end + 1
                self.fail_chunk(end, 1, failure)
            if items:
                self.engine.add_items(self, start, items)
            if self.source is None:
                self.engine.source_done(self)

    def close_source(self, exc: BaseException) -> None:
        """Stop reading input (the pool was terminated): ``exc`` ends the iteration."""
        if self.source is None:
            return
        self.source = None
        index = self.pulled
        self.pulled = index + 1
        self.fail_chunk(index, 1, exc)

    def abandon(self) -> None:
        """Its consumer is gone (an executor's ``map`` closed early, or that raised): read
        no more input and never send the items not sent yet, as the standard executor's
        ``map`` cancels its futures not started."""
        with self._source_lock:
            self.close_source(concurrent.futures.CancelledError("the map was closed"))
        self.engine.drop_unsent(self)

    def finished(self) -> bool:
        """Whether all input was read and every outcome is known."""
        return self.source is None and self._delivered >= self.pulled

    def deliver(self, start, values, errors):
        chunk = (values, dict(errors) if errors else None)
        with self.cond:
            self._delivered += len(values)
            if self.ordered:
                self.chunks[start] = chunk
            else:
                self.arrived.append(chunk)
            self.cond.notify()
