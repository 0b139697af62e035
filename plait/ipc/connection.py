"""Connections: ``Pipe``, ``Connection`` and ``wait``, as in ``multiprocessing.connection``.

Theory of operation
-------------------
A ``Connection`` is a socket plus a framing ``Channel`` (``plait._core.framing``).
``Pipe()`` is a ``socketpair`` of type ``SOCK_SEQPACKET``: the kernel keeps message
boundaries, so a small message goes out with one ``send`` (header and pickle
together) and comes in with one ``recv_into`` into a buffer allocated once per
connection, and ``recv`` unpickles straight from that buffer. Objects are pickled with
protocol 5 by the C pickler (the ``serialization`` fallbacks only when it refuses) and
their large buffers (numpy arrays, ``PickleBuffer``) stay out of band: they go out by
``sendmsg`` without being joined to the pickle and are received straight into their
own memory, and from 32 MiB on they travel in a shared-memory segment (one copy; the
receiver maps it). ``Pipe(False)`` is the same socket pair with one end read-only and
the other write-only. ``benchmarks/bench_process.py`` measures both against
``multiprocessing.Pipe``.

The connection never reads ahead of the message it returns, so the kernel's view of
the fd is the whole truth: ``poll`` and ``wait`` ask the fd alone, and a plait connection
can sit in any selector beside sockets and process sentinels.

Sending a ``Connection`` inside a message sends its fd: pickling one registers a dup
of its fd with ``fdpass``; the frame carries it by ``SCM_RIGHTS`` and the receiver gets
a ``Connection`` on the new fd. A start method that pickles a child's arguments does the
same with ``fdpass.FdCollector``/``FdSupply``; a forked child simply inherits the fd.
Pickling a connection anywhere else (over TCP, plain ``pickle.dumps``) raises
``PicklingError``.

Semantics and exceptions follow ``multiprocessing.connection.Connection``: ``EOFError``
when the peer is gone, ``OSError`` on a closed or wrong-direction handle, ``BufferTooShort``
from ``recv_bytes_into`` with the whole message in ``args[0]``, ``ValueError`` for bad
offsets and sizes. Past the standard: each connection has a ``max_message_size``
(``MessageTooLarge``, a ``ValueError``, on either side), and the receiving calls take an
optional ``timeout`` (``TimeoutError``) for the start of the next message.

A connection is not thread-safe: use it from one thread at a time (or one sender and
one receiver), as with the standard library's.
"""

from __future__ import annotations

import copyreg
import errno
import math
import operator
import os
import pickle
import select
import socket
from collections.abc import Iterable
from typing import Any

from plait._core import fdpass, framing, serialization
from plait._core.errors import BufferTooShort
from plait._core.framing import MAX_MESSAGE_SIZE, MessageTooLarge

__all__ = [
    "Connection",
    "ConnectionWrapper",
    "Pipe",
    "rebuild_connection",
    "reduce_connection",
    "wait",
]

_pickle_loads = pickle.loads
_BREAKING = (MessageTooLarge, framing.FrameError)
_pickle_dumps = pickle.dumps
_PROTOCOL = serialization.PROTOCOL
_POLL_MAX_SECONDS = (2**31 - 1) / 1000


class Connection:
    """One end of a message channel over a socket (``Pipe``, ``Listener``, ``Client``).

    ``Connection(handle)`` takes ownership of the socket fd ``handle``; closing the
    connection closes it.
    """

    def __init__(
        self,
        handle: int,
        readable: bool = True,
        writable: bool = True,
        *,
        max_message_size: int = MAX_MESSAGE_SIZE,
    ) -> None:
        handle = operator.index(handle)
        if handle < 0:
            raise ValueError("invalid handle")
        if not readable and not writable:
            raise ValueError("at least one of `readable` and `writable` must be True")
        max_message_size = operator.index(max_message_size)
        if max_message_size <= 0:
            raise ValueError(f"max_message_size must be positive, not {max_message_size}")
        self._sock: socket.socket | None = None
        self._bad_fd: int | None = None
        self._readable = bool(readable)
        self._writable = bool(writable)
        try:
            sock = socket.socket(fileno=handle)
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise OSError(
                    exc.errno, f"a Connection needs a socket; fd {handle}: {exc.strerror}"
                ) from None
            # As the standard library: a handle that is not open fails on first use.
            self._bad_fd = handle
            self._channel = None
            return
        sock.setblocking(True)
        self._sock = sock
        self._channel = framing.Channel(sock, max_message_size)
        self._oob: list[pickle.PickleBuffer] = []  # reused by send for the C pickler's buffers

    # -- state ----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True if the connection is closed."""
        return self._sock is None and self._bad_fd is None

    @property
    def readable(self) -> bool:
        """True if the connection is readable."""
        return self._readable

    @property
    def writable(self) -> bool:
        """True if the connection is writable."""
        return self._writable

    @property
    def max_message_size(self) -> int:
        """The largest message (payload plus buffers, in bytes) this end sends or accepts."""
        if self._channel is None:
            self._check_closed()
        return self._channel.max_message_size

    def fileno(self) -> int:
        """The socket fd. Raises ``OSError`` if closed."""
        self._check_closed()
        return self._sock.fileno()

    def close(self) -> None:
        """Close the connection (idempotent); the peer then gets ``EOFError``."""
        self._bad_fd = None
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        sock = getattr(self, "_sock", None)
        if sock is not None:
            sock.close()

    def __repr__(self) -> str:
        state = "closed" if self._sock is None else f"fd={self._sock.fileno()}"
        return f"<plait.ipc.Connection {state}>"

    def _check_closed(self) -> None:
        if self._sock is None:
            if self._bad_fd is not None:
                raise OSError(
                    errno.EBADF, f"the handle of this Connection, fd {self._bad_fd}, is not open"
                )
            raise OSError("handle is closed")

    def _check_readable(self) -> None:
        self._check_closed()
        if not self._readable:
            raise OSError("connection is write-only")

    def _check_writable(self) -> None:
        self._check_closed()
        if not self._writable:
            raise OSError("connection is read-only")

    # -- sending --------------------------------------------------------------------

    def send(self, obj: Any) -> None:
        """Send a picklable object; blocks while the peer's buffer is full.

        Raises ``pickle.PicklingError`` (nothing is sent; the connection stays usable),
        ``MessageTooLarge`` past ``max_message_size``, ``BrokenPipeError`` when the peer
        is gone, ``OSError`` if closed or read-only.
        """
        if self._sock is None or not self._writable:
            self._check_writable()
        # Fast path: the C pickler, no fd collector. Whatever it refuses (lambdas, and
        # connections, whose fds need a collector) takes the slow path from the start.
        oob = self._oob
        try:
            payload = _pickle_dumps(obj, _PROTOCOL, buffer_callback=oob.append)
        except Exception:
            oob.clear()
            self._send_slow(obj)
            return
        if oob:
            buffers = oob[:]
            oob.clear()
            self._send_pickle(obj, payload, buffers, ())
        else:
            self._channel.send(payload)

    def _send_slow(self, obj: Any) -> None:
        if not self._channel.unix:
            payload, buffers = serialization.dumps_oob(obj)
            self._send_pickle(obj, payload, buffers, ())
            return
        with fdpass.FdCollector() as collector:
            payload, buffers = serialization.dumps_oob(obj)
        try:
            self._send_pickle(obj, payload, buffers, collector.fds)
        finally:
            collector.close()

    def _send_pickle(self, obj, payload, buffers, fds) -> None:
        if not buffers:
            self._channel.send(payload, (), fds)
            return
        try:
            views = [b.raw() for b in buffers]
        except BufferError:  # a non-contiguous buffer: let pickle copy it in-band
            views = None
        if views is None or len(views) > framing.MAX_BUFFERS:
            payload, views = serialization.dumps(obj), []
        self._channel.send(payload, views, fds)

    def send_bytes(self, buf: Any, offset: int = 0, size: int | None = None) -> None:
        """Send ``size`` bytes of the bytes-like ``buf`` from ``offset`` as one message.

        Blocks while the peer's buffer is full. Raises ``TypeError`` if ``buf`` is not
        bytes-like, ``ValueError`` for a bad ``offset``/``size``, ``MessageTooLarge``
        past ``max_message_size``, ``OSError`` if closed or read-only.
        """
        if self._sock is None or not self._writable:
            self._check_writable()
        m = memoryview(buf)
        if m.itemsize > 1 or m.ndim != 1 or m.format != "B":
            m = m.cast("B")
        n = m.nbytes
        if offset < 0:
            raise ValueError("offset is negative")
        if n < offset:
            raise ValueError("buffer length < offset")
        if size is None:
            size = n - offset
        elif size < 0:
            raise ValueError("size is negative")
        elif offset + size > n:
            raise ValueError("buffer length < offset + size")
        if offset or size != n:
            m = m[offset : offset + size]
        self._channel.send(m)

    # -- receiving ------------------------------------------------------------------

    def recv(self, *, timeout: float | None = None) -> Any:
        """Receive one object sent by ``send``.

        Blocks until a message arrives, or ``timeout`` seconds (``TimeoutError``; None
        waits forever) for its first byte. Raises ``EOFError`` when the peer is gone and
        nothing is left, ``OSError`` if closed or write-only, the unpickling error of a
        corrupt message (the connection stays usable), ``MessageTooLarge`` (the
        connection is then closed).
        """
        if self._sock is None or not self._readable:
            self._check_readable()
        if timeout is not None:
            self._wait_message(timeout)
        try:
            payload, buffers, fds = self._channel.recv(None)
        except _BREAKING:
            self.close()  # the rest of the frame is still in the socket
            raise
        if fds:
            with fdpass.FdSupply(fds):
                return _pickle_loads(payload, buffers=buffers)
        return _pickle_loads(payload, buffers=buffers)

    def recv_bytes(self, maxlength: int | None = None, *, timeout: float | None = None) -> bytes:
        """Receive one message as bytes (what ``send_bytes`` sent, or the pickle ``send`` made).

        Blocks like ``recv``. A message longer than ``maxlength`` raises
        ``OSError("bad message length")`` and, as in the standard library, leaves the
        connection unable to receive again (closed, if it could only receive).
        """
        if maxlength is not None and maxlength < 0:
            raise ValueError("negative maxlength")
        if self._sock is None or not self._readable:
            self._check_readable()
        if timeout is not None:
            self._wait_message(timeout)
        return bytes(self._recv_message(maxlength))

    def recv_bytes_into(self, buf: Any, offset: int = 0, *, timeout: float | None = None) -> int:
        """Receive one message into the writable buffer ``buf`` at byte ``offset``.

        Returns the message's length in bytes. Blocks like ``recv``. Raises
        ``BufferTooShort`` (the message in ``args[0]``) when it does not fit,
        ``ValueError`` for a bad offset, ``TypeError`` for a read-only buffer.
        """
        if self._sock is None or not self._readable:
            self._check_readable()
        with memoryview(buf) as m:
            if m.readonly:
                raise TypeError("recv_bytes_into needs a writable buffer")
            bytesize = m.nbytes
            if offset < 0:
                raise ValueError("negative offset")
            if offset > bytesize:
                raise ValueError("offset too large")
            if timeout is not None:
                self._wait_message(timeout)
            data = self._recv_message(None)
            size = data.nbytes
            if bytesize < offset + size:
                raise BufferTooShort(bytes(data))
            m.cast("B")[offset : offset + size] = data
            return size

    def _recv_message(self, maxlength: int | None) -> memoryview:
        """One message as a byte view: raw bytes, or a pickle made in-band."""
        limit = self._channel.max_message_size
        if maxlength is not None and maxlength < limit:
            limit = maxlength
        try:
            payload, buffers, fds = self._channel.recv(limit)
        except _BREAKING as exc:
            if isinstance(exc, MessageTooLarge) and exc.limit == maxlength:
                raise self._too_long() from exc
            self.close()  # the rest of the frame is still in the socket
            raise
        if fds:
            for fd in fds:
                os.close(fd)
            raise OSError(
                "the message carries file descriptors (a connection or socket sent with "
                "send()): only recv() can receive it"
            )
        if not buffers:
            return payload
        # A pickle with out-of-band buffers, made in-band without being unpickled: the
        # bytes of a peer not yet authenticated must not run (see ``plait.ipc.auth``).
        data = memoryview(serialization.in_band(payload, buffers))
        if maxlength is not None and data.nbytes > maxlength:
            raise self._too_long()
        return data

    def _too_long(self) -> OSError:
        """The error for a message past ``recv_bytes``'s ``maxlength``. As in the standard
        library, the connection can never read again: a duplex end can still send."""
        if self._writable:
            self._readable = False
        else:
            self.close()
        return OSError("bad message length")

    def poll(self, timeout: float | None = 0.0) -> bool:
        """Whether a message (or end of file) is waiting; waits up to ``timeout`` seconds.

        ``None`` waits forever. Raises ``OSError`` if closed or write-only.
        """
        if self._sock is None or not self._readable:
            self._check_readable()
        # A poll object per call: two threads may poll one connection at once.
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN)
        return bool(poller.poll(_milliseconds(timeout)))

    def _wait_message(self, timeout: float) -> None:
        if not self.poll(timeout):
            raise TimeoutError(f"no message within {timeout} s")

    # -- pickling -------------------------------------------------------------------

    def __reduce__(self):
        self._check_closed()
        index = fdpass.reduce_fd(self._sock.fileno())
        return rebuild_connection, (
            index,
            self._readable,
            self._writable,
            self._channel.max_message_size,
        )


def reduce_connection(conn: Connection) -> tuple:
    """``(rebuild_connection, args)`` for ``conn``: what pickling it sends (its fd
    travels beside the pickle; see the module). Raises ``PicklingError`` outside a plait
    transfer, ``OSError`` if ``conn`` is closed."""
    return conn.__reduce__()


def rebuild_connection(
    index: int, readable: bool, writable: bool, max_message_size: int = MAX_MESSAGE_SIZE
) -> Connection:
    """The ``Connection`` on the fd that travelled as ``index`` (the receiving half of
    ``reduce_connection``)."""
    return Connection(
        fdpass.rebuild_fd(index), readable, writable, max_message_size=max_message_size
    )


def reduce_socket(sock: socket.socket) -> tuple:
    """``(rebuild_socket, args)`` for ``sock``: its fd travels beside the pickle, as a
    connection's does. Raises ``PicklingError`` outside a plait transfer."""
    return rebuild_socket, (fdpass.reduce_fd(sock.fileno()), sock.family, sock.type, sock.proto)


def rebuild_socket(index: int, family: int, type_: int, proto: int) -> socket.socket:
    """The socket on the fd that travelled as ``index``."""
    return socket.socket(family, type_, proto, fileno=fdpass.rebuild_fd(index))


# Sockets travel through plait's channels and to children as the standard module's
# pickler sends them. copyreg is the table the C pickler's fast path consults; a socket
# had no reducer there (pickling one raised TypeError), so nothing else changes meaning.
copyreg.pickle(socket.socket, reduce_socket)


class ConnectionWrapper:
    """A connection whose ``send``/``recv`` encode objects with ``dumps``/``loads`` (bytes
    in and out) instead of pickle; the other methods are the connection's.
    ``XmlListener`` and ``XmlClient`` hand out these."""

    def __init__(self, conn: Connection, dumps: Any, loads: Any) -> None:
        self._conn = conn
        self._dumps = dumps
        self._loads = loads
        self.fileno = conn.fileno
        self.close = conn.close
        self.poll = conn.poll
        self.recv_bytes = conn.recv_bytes
        self.send_bytes = conn.send_bytes

    def send(self, obj: Any) -> None:
        """Send ``dumps(obj)`` as one message; raises what ``dumps`` and ``send_bytes`` do."""
        self._conn.send_bytes(self._dumps(obj))

    def recv(self, *, timeout: float | None = None) -> Any:
        """Receive one message and return ``loads`` of it; blocks like ``recv_bytes``
        (up to ``timeout`` seconds, then ``TimeoutError``)."""
        return self._loads(self._conn.recv_bytes(timeout=timeout))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def __enter__(self) -> ConnectionWrapper:
        return self

    def __exit__(self, *exc) -> None:
        self._conn.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} over {self._conn!r}>"


def _milliseconds(timeout: float | None) -> int | None:
    """A ``poll`` timeout: None blocks; past poll's range (~24 days, inf) blocks too."""
    if timeout is None:
        return None
    if timeout <= 0:
        return 0
    if timeout >= _POLL_MAX_SECONDS:
        return None
    return math.ceil(timeout * 1000)


def Pipe(  # noqa: N802 - the standard library's name
    duplex: bool = True, *, max_message_size: int = MAX_MESSAGE_SIZE
) -> tuple[Connection, Connection]:
    """Return ``(conn1, conn2)``, the two ends of a new pipe.

    With ``duplex=False`` ``conn1`` only receives and ``conn2`` only sends. Raises
    ``OSError`` when the process is out of fds.
    """
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        c1 = Connection(a.detach(), True, duplex, max_message_size=max_message_size)
        c2 = Connection(b.detach(), duplex, True, max_message_size=max_message_size)
    finally:
        a.close()
        b.close()
    return c1, c2


def wait(object_list: Iterable[Any], timeout: float | None = None) -> list[Any]:
    """Wait until at least one object of ``object_list`` is ready; return the ready ones.

    Objects are connections, sockets, process sentinels: ints (fds) or anything with a
    ``fileno()``. Ready means readable, at end of file, or in error (a dead process's
    sentinel, a closed peer). Blocks up to ``timeout`` seconds (``None``: forever) and
    returns an empty list when it passes (an empty ``object_list`` just sleeps, as in the
    standard library). Raises ``OSError`` for a closed connection,
    ``TypeError`` for an object that is neither an int nor has ``fileno()``.
    """
    by_fd: dict[int, list[Any]] = {}
    poller = select.poll()
    for obj in object_list:
        fd = obj if isinstance(obj, int) else _fileno(obj)
        if fd not in by_fd:
            by_fd[fd] = []
            poller.register(fd, select.POLLIN)
        by_fd[fd].append(obj)
    ready = poller.poll(_milliseconds(timeout))
    out = []
    for fd, _ in ready:
        out.extend(by_fd[fd])
    return out


def _fileno(obj: Any) -> int:
    fileno = getattr(obj, "fileno", None)
    if fileno is None:
        raise TypeError(f"wait() needs ints or objects with fileno(), not {type(obj).__name__}")
    return fileno()
