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

Laziness (``IMapJob``): the input iterator is read ahead of what the consumer took,
up to ``window()`` items: an endless generator holds a bounded number of items. The
window follows the chunk size, so adaptive chunks keep every worker fed; with a
``buffersize`` it is that many tasks. Input is read once less than half the window is
left ahead (``low_water``), up to the full window, so the reader wakes in batches, not
once per consumed item. Who reads:

- An input held in memory (the iterator of a list, tuple, range, dict, set, str or
  bytes: ``IN_MEMORY``) cannot block: its consumer reads it, in window-size slices,
  when its iterator asks for the next result (``top_up``), and no thread is started.
- Any other input (a generator, a file, a queue's getter) may be slow or block until
  the consumer does something (a crawler whose results feed its own input): a *feeder*
  thread of the job reads it (``_feed``), and neither ``imap()``, the iterator's
  ``next()`` nor ``Pool.close()`` ever read it in the caller's thread, as in
  ``multiprocessing``, whose task handler thread reads every input. Each item goes to
  the engine as soon as it is read (each chunk, with a fixed ``chunksize``): nothing
  read waits behind a read that blocks. The feeder sleeps on ``_bell`` while the window
  is full; the consumer rings it once it took enough (``top_up``). The bell is a
  ``SimpleQueue``, rung without any lock, so that an iterator dropped in any thread
  (``consumer_gone``, from its ``__del__``, which may run in the middle of any code,
  the feeder's own) stops its feeder without a lock-order hazard.
- ``Pool.close`` lifts the window (``drain``): the feeder (started then for an input
  in memory) reads the rest in the background, as ``multiprocessing`` does, and
  ``join`` waits for it. A job with a ``buffersize`` reads no more instead: its input
  may be endless.

The reader holds ``_source_lock`` while it reads (two readers of an input in memory
take turns: the consumer and, after ``close``, the feeder); nothing else takes it, so
a feeder blocked in the user's generator blocks no one. Items read are committed under
the engine's lock, which is also where the source is closed (``close_source``:
terminate, ``abandon``, ``close`` with a ``buffersize``): items read after that are
dropped, and a feeder that is blocked in the generator when its pool is terminated
leaves once the generator returns (it is a daemon thread: it never keeps the process
alive). A feeder ends when its input ends, when its source is closed, or when its
consumer's iterator is dropped (before ``close``).

An input iterator that raises fails the item at that position, and the iteration ends
after it, as in ``multiprocessing``. With a fixed ``chunksize`` the input is read in
whole chunks and an input that raises inside a chunk fails that chunk: its items read
before the error never run and the error takes their place (``multiprocessing`` cuts
chunks as it reads, and the same program sees the same sequence on both). Outcomes are
kept as their chunks arrive, ``(values, {position: exception} or None)``, no object
per item: by first index for an ordered iterator, in arrival order for an unordered
one.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import math
import queue
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
SMALL_SEGMENT = 64  # shorter additions are copied into the buffer's own last segment

# The iterators of inputs held in memory: reading them never blocks (see the essay).
IN_MEMORY = frozenset(
    type(iter(container))
    for container in (
        [],
        (),
        range(0),
        range(1 << 64),
        "",
        "\u20ac",
        b"",
        bytearray(),
        {},
        {}.values(),
        {}.items(),
        set(),
    )
)


class Buffer:
    """Items not sent yet, as whole lists: cutting a chunk is a slice, not a loop per item.

    Items enter at the end in input order and leave from the front, so the index of an
    item is the count of items that left before it (``next_index``). Items added a few at
    a time (a feeder hands them over one by one) are copied into a last segment the
    buffer made itself (``_tail``), so that cutting a chunk of them stays one slice.
    """

    __slots__ = ("_segments", "_offset", "_len", "_tail", "next_index")

    def __init__(self) -> None:
        self._segments: deque[list] = deque()
        self._offset = 0  # items of the first segment already taken
        self._len = 0
        self._tail: list | None = None  # the last segment, if this buffer made it
        self.next_index = 0

    def __len__(self) -> int:
        return self._len

    def extend(self, items: list) -> None:
        if not items:
            return
        segments, tail = self._segments, self._tail
        if len(items) >= SMALL_SEGMENT:
            segments.append(items)
        elif tail is not None and segments and segments[-1] is tail:
            tail.extend(items)
        else:
            self._tail = list(items)
            segments.append(self._tail)
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
        self._tail = None


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

    The consumer (``results.IMapIterator``) counts what it took in ``consumed``, asks
    for more input through ``top_up`` and takes arrived chunks from ``chunks``
    (``ordered``) or ``arrived``, under ``cond``. ``source`` turns None, under the
    engine's lock and with ``cond`` notified, once no more input will be read (the input
    ended, raised, or was closed); ``pulled`` then counts every position.
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
        self._in_memory = type(self.source) in IN_MEMORY
        self._source_lock = threading.Lock()  # held by the thread reading the source
        self._workers = workers
        self.pulled = 0  # positions read from the source (an input's error takes one)
        self.consumed = 0  # results the consumer took (its iterator counts them)
        self._delivered = 0  # outcomes known
        self.low_water = -1  # the consumer calls top_up once this little is left ahead
        self._unbounded = False  # Pool.close: read the rest, no window
        self._consumer_gone = False  # its iterator was dropped
        self._feeder: threading.Thread | None = None
        self._bell: queue.SimpleQueue = queue.SimpleQueue()  # wakes the feeder
        self.chunks: dict[int, tuple[list, dict | None]] = {}  # ordered: by first index
        self.arrived: deque = deque()  # unordered: chunks in arrival order
        self.lock = threading.Lock()  # the consumer takes it directly, once per item
        self.cond = threading.Condition(self.lock)

    def window(self) -> int:
        """Items read ahead of the consumer, at most (plus the rest of a chunk)."""
        if self._buffersize is not None:
            return self._buffersize * (self.chunksize or 1)
        with self.engine.lock:
            size = self.next_size(self._workers)
        return max(MIN_WINDOW, size * self._workers * 4)

    # -- the consumer's side ----------------------------------------------------------

    def start(self) -> None:
        """Begin reading (``imap`` calls it; never blocks on the input): an input in
        memory reads its first window now, any other starts its feeder."""
        if self._in_memory:
            self.top_up()
        else:
            self._make_feeder().start()

    def top_up(self) -> None:
        """More input once the consumer took enough (it calls this when at most
        ``low_water`` items are left ahead): an input in memory is read here, up to
        ``window()`` items ahead; a feeder is rung. Never blocks on the input."""
        if self._feeder is not None:
            if self._unbounded:
                self.low_water = -1  # the feeder reads the rest without being rung
            else:
                self._bell.put(None)
            return
        if self.source is None:
            self.low_water = -1  # nothing more to read: the consumer stops checking
            return
        window = self.window()
        self.low_water = window // 2
        ahead = self.pulled - self.consumed
        if ahead <= self.low_water:
            self._read(window - ahead)

    def consumer_gone(self) -> None:
        """Its iterator was dropped: the feeder reads no more once its window is full
        (after ``close`` it still reads the rest, which ``join`` waits for). Takes no
        lock: it runs from ``__del__``, in whatever thread dropped the iterator."""
        self._consumer_gone = True
        self._bell.put(None)

    # -- the pool's side ----------------------------------------------------------------

    def drain(self) -> None:
        """At ``Pool.close``: the rest of the input is read in the background, as the
        standard pool does (``join`` waits for it); never blocks on the input.

        A job with a ``buffersize`` reads no more (its input may be endless): its consumer
        gets the results of what was read, then ``RuntimeError``.
        """
        engine = self.engine
        with engine.lock:
            if self.source is None:
                return
            if self._buffersize is not None:
                self.close_source(
                    RuntimeError(
                        "the pool was closed: the rest of the input was not read (buffersize)"
                    )
                )
                feeder = None
            else:
                self._unbounded = True
                self.low_water = -1
                feeder = self._make_feeder() if self._feeder is None else None
        engine.run_deferred()
        if feeder is not None:
            feeder.start()
        else:
            self._bell.put(None)

    def close_source(self, exc: BaseException) -> None:
        """Stop reading input (under the engine's lock): ``exc`` ends the iteration.

        Items a reader has in hand are dropped when it commits them; a feeder blocked
        in the input leaves when the input returns."""
        if self.source is None:
            return
        index = self.pulled
        self.pulled = index + 1
        self._end_source()
        self.fail_chunk(index, 1, exc)

    def abandon(self) -> None:
        """Its consumer is gone (an executor's ``map`` closed early, or that raised): read
        no more input and never send the items not sent yet, as the standard executor's
        ``map`` cancels its futures not started."""
        engine = self.engine
        with engine.lock:
            self.close_source(concurrent.futures.CancelledError("the map was closed"))
            engine.drop_unsent(self)
        engine.run_deferred()

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

    # -- reading ------------------------------------------------------------------------

    def _make_feeder(self) -> threading.Thread:
        # A daemon: one blocked in the user's generator never keeps the process alive.
        feeder = threading.Thread(target=self._feed, name=f"plait-imap-{self.id}", daemon=True)
        self._feeder = feeder
        return feeder

    def _feed(self) -> None:
        """The feeder thread: read while there is room, until reading ends."""
        try:
            while (want := self._room()) != 0:
                self._read(want)
        except BaseException as exc:  # not the input's (those are items): never a silent hang
            with self.engine.lock:
                self.close_source(exc)
            self.engine.run_deferred()

    def _room(self) -> int | None:
        """Wait (the feeder) until input may be read; return how many items (None: the
        rest), or 0 when reading has ended."""
        while True:
            if self.source is None:
                return 0
            if self._unbounded:
                return None
            if self._consumer_gone:
                with self.engine.lock:
                    if self.source is not None and not self._unbounded:
                        self._end_source()
                continue
            window = self.window()
            low_water = window // 2
            if self.pulled - self.consumed <= low_water:
                self.low_water = -1  # reading: the consumer need not ring
                return window - (self.pulled - self.consumed)
            # Publish the mark, then look again: a consumer that counted after the first
            # look sees the mark and rings.
            self.low_water = low_water
            if self.pulled - self.consumed > low_water:
                self._bell.get()

    def _read(self, want: int | None) -> None:
        """Read up to ``want`` items (None: all the rest) and commit them to the engine.

        An input in memory is read in slices; any other item by item (chunk by chunk
        with a fixed ``chunksize``), each committed before the next read, which may block.
        """
        chunksize = self.chunksize
        if want is not None and chunksize is not None:
            want = -(-want // chunksize) * chunksize  # whole chunks: see the essay
        if self._in_memory:
            step = want if want is not None else self.window()
        else:
            step = chunksize or 1
        with self._source_lock:
            source = self.source
            while source is not None and (want is None or want > 0):
                if self._consumer_gone and not self._unbounded:
                    return  # the feeder's _room ends the source
                size = step if want is None else min(step, want)
                items: list = []
                failure = None
                try:
                    items.extend(itertools.islice(source, size))
                except Exception as exc:
                    failure = exc
                    if chunksize is not None:
                        del items[len(items) - len(items) % chunksize :]
                ended = failure is not None or len(items) < size
                if not self._commit(items, failure, ended) or ended:
                    return
                if want is not None:
                    want -= size

    def _commit(self, items: list, failure: Exception | None, ended: bool) -> bool:
        """Hand what was read to the engine; False if the source was closed meanwhile
        (the items are dropped)."""
        engine = self.engine
        with engine.lock:
            if self.source is None:
                return False
            start = self.pulled
            end = start + len(items)
            self.pulled = end if failure is None else end + 1
            if items:
                engine.add_items(self, start, items)
            if failure is not None:
                self.fail_chunk(end, 1, failure)
            if ended:
                self._end_source()
        if failure is not None or ended:
            engine.run_deferred()
        return True

    def _end_source(self) -> None:
        """No more input will be read (under the engine's lock): tell the engine, the
        consumer (waiting for a result that will not come) and the feeder."""
        self.source = None
        self.low_water = -1
        self.engine.source_done(self)
        with self.cond:
            self.cond.notify_all()
        self._bell.put(None)
