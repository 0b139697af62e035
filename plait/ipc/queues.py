"""Queues between processes: ``Queue``, ``JoinableQueue``, ``SimpleQueue``.

Theory of operation
-------------------
A queue is a ring buffer in a shared ``memfd`` (the C core ``plait._core._ring``, whose
source explains the ring, its lock and how sleepers wake) plus a Unix socket pair for
the rare items that do not travel in the ring. ``put`` pickles the item (protocol 5,
large buffers out of band) and copies it into the ring in the caller's thread; ``get``
copies it out and unpickles it. There is no feeder thread: when ``put`` returns the item
is in shared memory, owned by no process, so

- a process that put items can always be joined, and exits at once (the standard
  library's feeder-thread deadlock cannot happen), and ``join_thread`` and
  ``cancel_join_thread`` have nothing to do;
- a producer killed in the middle of ``put`` leaves no trace (an entry is published by
  one store at the end), and a consumer killed in ``get`` before it took the item leaves
  it for the next one. The ring's lock, if the killed process held it, is recovered by
  the next user. ``statistics()`` reports ``lost`` (items known lost that way; only a
  segment whose fd a consumer had already received when it died) and ``owner_deaths``.

Where an item goes:

- small items and items up to a third of the ring (``capacity``, 32 MiB by default,
  so 8 MB numpy arrays): into the ring; their out-of-band buffers are copied straight
  from the array to the ring and from the ring into one ``bytearray`` the arrays of the
  item are rebuilt on (two copies in all, no pipe);
- larger items, and items of an unbounded queue whose ring is full: into a sealed
  ``memfd`` segment (``plait._core.segment``), whose fd is sent over the queue's socket
  while a small entry in the ring holds its place in line. The receiver maps it: the
  arrays it gets are the segment's pages, not a copy. The kernel keeps the fd alive in
  the socket while it is in flight, also after its producer exited, and frees it with
  the last user. An eighth of the ring is kept for the 32-byte entries that hold the
  segments' places (131,072 of them in a default ring). So ``put`` on an unbounded queue
  does not wait for consumers until that room is used up, or the socket holds as many
  segments as its buffer allows (about one per kB of ``net.core.wmem_max``, thousands on
  a default Linux); then it waits (up to its ``timeout``, then ``queue.Full``).

Bounds: ``maxsize`` counts items, as in the standard library; ``put`` on a full queue
blocks (up to ``timeout``, then ``queue.Full``). ``get`` on an empty queue blocks (then
``queue.Empty``). A negative timeout polls, as in ``multiprocessing``. Items must be
picklable and must not own fds (a ``Connection`` or ``Lock`` inside an item raises
``PicklingError``: pass those as ``Process`` arguments).

Pickling a queue (as a ``Process`` argument, or through a plait ``Connection``) sends
its memfd, sockets and doorbell; a forked child inherits them. Each queue holds four
fds.

An item that cannot be pickled makes ``put`` raise at once (the standard library's
feeder thread prints the error and drops the item, and a consumer waiting for it waits
forever). A subclass that defines the standard hook ``_on_queue_feeder_error(e, obj)``
(as ``concurrent.futures`` does) gets it called instead, with the pickling error, and
``put`` returns. ``_reader`` and ``_writer``, the standard library's pipe ends, are
stand-ins with what code does with them (``concurrent.futures`` waits on
``result_queue._reader`` beside process sentinels): the reader's ``fileno()`` is an
eventfd, the doorbell, readable while an item waits, that costs nothing until someone
asks for it (see ``_End``).
"""

from __future__ import annotations

import _thread
import functools
import operator
import os
import pickle
import select
import socket
import struct
import time
import types
from queue import Empty, Full
from typing import Any

from plait._core import fdpass, segment, serialization
from plait._core._ring import HEADER_SIZE, PARTS, PLAIN, SEGMENT, Ring
from plait._core.block import Block
from plait.ipc.connection import _milliseconds

__all__ = ["Empty", "Full", "JoinableQueue", "Queue", "SimpleQueue"]

DEFAULT_CAPACITY = 32 * 1024 * 1024
_SPILL_BUFFER = 64 * 1024 * 1024
_REAP_EVERY = 1.0  # seconds: how often a reader's poll looks for a putter that died
_PROTOCOL = serialization.PROTOCOL
_dumps = pickle.dumps
_loads = pickle.loads


class _Fd:
    """An fd of the queue (an end of its segment socket pair, its doorbell) that pickles
    by travelling."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self):
        return _rebuild_fd, (fdpass.reduce_fd(self.fd),)

    def __del__(self) -> None:
        fd, self.fd = getattr(self, "fd", -1), -1
        if fd >= 0:
            os.close(fd)


def _rebuild_fd(index: int) -> _Fd:
    return _Fd(fdpass.rebuild_fd(index))


class Queue:
    """A FIFO queue between processes, as ``multiprocessing.Queue``.

    ``maxsize`` <= 0 means unbounded. ``capacity`` is the ring's size in bytes (a power
    of two, at least 64 KiB); items over a third of it travel in segments. Raises
    ``TypeError`` for a ``maxsize`` that is not an int, ``ValueError`` for a bad
    ``capacity``.
    """

    _joinable = False
    _on_queue_feeder_error = None  # the standard hook; see the module docstring

    def __init__(
        self, maxsize: int = 0, *, ctx: Any = None, capacity: int = DEFAULT_CAPACITY
    ) -> None:
        # ``ctx``: the standard signature's context; a plait queue is the same in all.
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError(f"maxsize must be an int, not {type(maxsize).__name__}")
        capacity = operator.index(capacity)
        if capacity < 65536 or capacity & (capacity - 1):
            raise ValueError(f"capacity must be a power of two >= 65536, not {capacity}")
        block = Block(HEADER_SIZE + capacity)
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # Segments in flight are charged to the sender's buffer (~1 kB each): ask for as
        # much as the system allows (net.core.wmem_max caps it silently).
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SPILL_BUFFER)
        send, recv = _Fd(a.detach()), _Fd(b.detach())
        doorbell = _Fd(os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK))
        self._setup(block, send, recv, doorbell, max(maxsize, 0), True)

    def _setup(
        self, block: Block, send: _Fd, recv: _Fd, doorbell: _Fd, maxsize: int, create: bool
    ) -> None:
        self._block, self._send, self._recv, self._doorbell = block, send, recv, doorbell
        self._maxsize = maxsize
        self._ring = Ring()
        self._ring._attach(
            block.mm,
            send.fd,
            recv.fd,
            create=create,
            maxsize=maxsize,
            joinable=self._joinable,
            doorbell=doorbell.fd,
        )
        self._inline_max = (block.size - HEADER_SIZE) // 3
        self._closed = False

    def __getstate__(self):
        if self._closed:
            raise self._closed_error()
        return self._block, self._send, self._recv, self._doorbell, self._maxsize

    def __setstate__(self, state) -> None:
        self._setup(*state, False)

    def _closed_error(self) -> Exception:
        return ValueError(f"Queue {self!r} is closed")

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"qsize={self._ring.qsize()}"
        return f"<plait {type(self).__name__}(maxsize={self._maxsize}, {state})>"

    # -- putting --------------------------------------------------------------------

    def put(self, obj: Any, block: bool = True, timeout: float | None = None) -> None:
        """Put ``obj`` into the queue.

        Blocks while the queue holds ``maxsize`` items, up to ``timeout`` seconds, then
        raises ``queue.Full`` (at once if ``block`` is false). An unbounded queue does not
        block (see the module's essay). Raises ``ValueError`` if the queue is closed,
        ``pickle.PicklingError`` if ``obj`` cannot be pickled (nothing is put).
        """
        if self._closed:
            raise self._closed_error()
        oob: list[pickle.PickleBuffer] = []  # per call: threads may put at once
        try:
            payload = _dumps(obj, _PROTOCOL, buffer_callback=oob.append)
        except Exception:  # what the C pickler refuses: cloudpickle, or a clear error
            try:
                payload, oob = serialization.dumps_oob(obj)
            except Exception as exc:
                if self._on_queue_feeder_error is None:
                    raise
                self._on_queue_feeder_error(exc.__cause__ or exc, obj)
                return
        if not oob:
            parts = (payload,)
            kind = PLAIN
            size = len(payload)
        else:
            try:
                parts = (payload, *[b.raw() for b in oob])
            except BufferError:  # not contiguous: let pickle copy it in-band
                parts = (serialization.dumps(obj),)
            kind = PARTS if len(parts) > 1 else PLAIN
            size = sum(memoryview(p).nbytes for p in parts)
        if size > self._inline_max:
            self._put_segment(parts, block, timeout)
        elif self._maxsize:
            if not self._ring.put(kind, parts, block, timeout):
                raise Full
        elif not self._ring.put(kind, parts, False):
            self._put_segment(parts, block, timeout)  # the ring is full: spill

    def _put_segment(self, parts: tuple, block: bool, timeout: float | None) -> None:
        deadline = None if timeout is None or not block else time.monotonic() + timeout
        views = [memoryview(p).cast("B") for p in parts]
        table = struct.pack(f"{len(views)}Q", *[v.nbytes for v in views])
        fd = segment.create(views, "plait-queue")
        try:
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                done = self._ring.put(SEGMENT, (table,), block, left, fd)
                if done:
                    return
                if done is False or not block:
                    raise Full
                # The socket holds as many segments as the kernel allows: wait for room.
                poller = select.poll()
                poller.register(self._send.fd, select.POLLOUT)
                if not poller.poll(100 if left is None else min(100, int(left * 1000) + 1)):
                    if left is not None and deadline - time.monotonic() <= 0:
                        raise Full
        finally:
            os.close(fd)

    def put_nowait(self, obj: Any) -> None:
        """``put(obj, False)``: raises ``queue.Full`` at once if the queue is full."""
        self.put(obj, False)

    # -- getting --------------------------------------------------------------------

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the oldest item.

        Blocks while the queue is empty, up to ``timeout`` seconds, then raises
        ``queue.Empty`` (at once if ``block`` is false). Raises ``ValueError`` if the
        queue is closed; the unpickling error of an item that cannot be rebuilt here (the
        item is consumed).
        """
        if self._closed:
            raise self._closed_error()
        entry = self._ring.get(block, timeout)
        if entry.__class__ is bytes:
            return _loads(entry)
        deadline = None if timeout is None else time.monotonic() + timeout
        while entry is None:  # an entry whose segment was lost (see the essay): skip it
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            entry = self._ring.get(block, left)
            if entry.__class__ is bytes:
                return _loads(entry)
        if entry is False:
            raise Empty
        kind, data, fd = entry
        if kind == PARTS:
            (count,) = struct.unpack_from("Q", data)
            lengths = struct.unpack_from(f"{count}Q", data, 8)
            view = memoryview(data)
            start = 8 + 8 * count
            parts = []
            for n in lengths:
                parts.append(view[start : start + n])
                start += n
            return _loads(parts[0], buffers=parts[1:])
        try:
            lengths = struct.unpack(f"{len(data) // 8}Q", data)
            parts = segment.map_views(fd, lengths)
        finally:
            os.close(fd)
        return _loads(parts[0], buffers=parts[1:])

    def get_nowait(self) -> Any:
        """``get(False)``: raises ``queue.Empty`` at once if the queue is empty."""
        return self.get(False)

    # -- state ----------------------------------------------------------------------

    def qsize(self) -> int:
        """The number of items in the queue now."""
        return self._ring.qsize()

    def empty(self) -> bool:
        """Whether the queue is empty now."""
        return self._ring.qsize() == 0

    def full(self) -> bool:
        """Whether the queue holds ``maxsize`` items now."""
        return bool(self._maxsize) and self._ring.qsize() >= self._maxsize

    def statistics(self) -> dict[str, int]:
        """Counters of the queue: items, bytes_used, capacity, maxsize, lost, owner_deaths,
        unfinished_tasks, getters_waiting, putters_waiting."""
        return self._ring.statistics()

    def close(self) -> None:
        """Close this process's handle: ``put`` and ``get`` then raise ``ValueError``.

        Items already put stay in the queue for other processes (nothing to flush: there
        is no feeder thread). Idempotent.
        """
        self._closed = True

    def join_thread(self) -> None:
        """Nothing to wait for (no feeder thread); as the standard library, call after
        ``close``: raises ``AssertionError`` before."""
        assert self._closed, f"Queue {self!r} not closed"

    def cancel_join_thread(self) -> None:
        """Nothing to cancel: a process exits without waiting for its items to be read."""

    @functools.cached_property
    def _reader(self) -> _End:
        return _End(self, "reader")

    @functools.cached_property
    def _writer(self) -> _End:
        return _End(self, "writer")

    @functools.cached_property
    def _rlock(self) -> Any:
        """The standard queue's lock around reading its pipe. A plait queue's ring has its
        own lock inside ``get``, so this lock guards nothing shared: it exists for code
        that takes it (the standard pool does at ``terminate``), and excludes only other
        holders of this object in this process."""
        return _thread.allocate_lock()

    @functools.cached_property
    def _wlock(self) -> Any:
        """The standard queue's lock around writing its pipe; as ``_rlock``."""
        return _thread.allocate_lock()


class _End:
    """One end of a queue under the standard library's names for its pipe ends
    (``queue._reader``, ``queue._writer``), for code that uses them as connections:
    ``closed``, ``close()``, and ``fileno()``, ``poll()``, ``recv()`` on the reader,
    ``send()`` on the writer. A plait queue has no pipe: the reader's ``fileno()`` is the
    queue's doorbell (readable while an item waits; see ``plait._core._ring``), so the
    reader can sit in ``select`` or ``multiprocessing.connection.wait``; ``recv()`` is
    ``get()`` and ``send(obj)`` is ``put(obj)``. Closing an end closes that end in this
    process, as closing a pipe end does: a worker of the standard pool closes the writer
    of the queue it reads from and goes on reading. ``queue.close()`` closes both."""

    __slots__ = ("_queue", "_name", "_closed", "_armed")

    def __init__(self, queue: Queue, name: str) -> None:
        self._queue = queue
        self._name = name
        self._closed = False
        self._armed = False

    @property
    def closed(self) -> bool:
        """Whether this end (or the whole queue) was closed in this process."""
        return self._closed or self._queue._closed

    def close(self) -> None:
        """Close this end in this process; the queue's other end stays usable."""
        self._closed = True

    def fileno(self) -> int:
        """The reader's fd: readable while an item is in the queue. Raises ``OSError``
        when closed, ``AttributeError`` on the writer."""
        queue = self._reader_queue("fileno")
        if not self._armed:
            # The arming is in shared memory and lasts: take the ring's lock for it once,
            # not at every wait() that asks for the fd.
            queue._ring._arm_doorbell()
            self._armed = True
        return queue._doorbell.fd

    def poll(self, timeout: float | None = 0.0) -> bool:
        """Whether an item waits, waiting up to ``timeout`` seconds (None: forever)."""
        poller = select.poll()
        poller.register(self.fileno(), select.POLLIN)
        ring = self._queue._ring
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # Only a publish rings the doorbell, and the entry of a putter that died in
            # its put holds back the ones after it until somebody reaps it: do, now and
            # again while waiting.
            ring._reap()
            wait = _REAP_EVERY
            if deadline is not None:
                wait = min(deadline - time.monotonic(), wait)
            if poller.poll(_milliseconds(max(wait, 0.0))):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def recv(self, *, timeout: float | None = None) -> Any:
        """``get()``: the next item; blocks until one arrives, or up to ``timeout``
        seconds (then ``queue.Empty``)."""
        return self._reader_queue("recv").get(timeout=timeout)

    def send(self, obj: Any) -> None:
        """``put(obj)`` (the writer only)."""
        if self._name != "writer":
            self._absent("send")
        if self.closed:
            raise OSError(f"the writer of {type(self._queue).__name__} {self._queue!r} is closed")
        self._queue.put(obj)

    def _reader_queue(self, name: str) -> Queue:
        if self._name != "reader":
            self._absent(name)
        if self.closed:
            raise OSError(f"the reader of {type(self._queue).__name__} {self._queue!r} is closed")
        return self._queue

    def _absent(self, name: str):
        raise AttributeError(
            f"{type(self._queue).__name__}._{self._name} has no {name!r}: a plait queue has "
            "no pipe (its items travel in shared memory); use get(timeout=...) and put()"
        )

    def __getattr__(self, name: str) -> Any:
        self._absent(name)


class JoinableQueue(Queue):
    """A ``Queue`` that counts unfinished tasks: ``task_done`` and ``join``."""

    _joinable = True

    def task_done(self) -> None:
        """Mark one item got from the queue as processed.

        Raises ``ValueError`` if called more times than items were put.
        """
        self._ring.task_done()

    def join(self, timeout: float | None = None) -> None:
        """Block until every item put has been marked done by ``task_done``.

        Raises ``TimeoutError`` naming the count of unfinished tasks if ``timeout``
        seconds pass first.
        """
        if not self._ring.join(timeout):
            left = self._ring.statistics()["unfinished_tasks"]
            raise TimeoutError(f"{left} tasks still unfinished after {timeout} s")


class SimpleQueue(Queue):
    """An unbounded queue, as ``multiprocessing.SimpleQueue``: ``put``, ``get``,
    ``empty``, ``close``. Its ``put`` and ``get`` are ``Queue``'s (so they also take
    ``block`` and ``timeout``; ``get()`` blocks until an item arrives). Once closed,
    they and ``empty`` raise ``OSError``, as the standard one's closed pipe does.
    """

    def __init__(self, *, ctx: Any = None, capacity: int = DEFAULT_CAPACITY) -> None:
        super().__init__(0, ctx=ctx, capacity=capacity)

    def _closed_error(self) -> Exception:
        return OSError("handle is closed")  # the standard one's closed pipe says so

    def empty(self) -> bool:
        """Whether the queue is empty now; ``OSError`` once closed."""
        if self._closed:
            raise self._closed_error()
        return super().empty()

    __class_getitem__ = classmethod(types.GenericAlias)
