"""Sockets for tasks: the standard socket API, awaited, and never blocking the kernel.

:class:`Socket` wraps a ``socket.socket`` (or an ``ssl.SSLSocket``) in non-blocking mode.
Every operation first makes the system call; only when it would block (``EAGAIN``, or
TLS's want-read/want-write) does the task wait on epoll, and then it tries again. For a
server that keeps up with its clients most calls never wait, and a wait costs no
``epoll_ctl`` because the kernel keeps registrations across waits.

One exception: a read that came back *short* (fewer bytes than asked) left the socket
drained. The next read on it would then almost always fail with ``EAGAIN`` — a
request/response peer cannot have answered yet — and that failed call and its exception
cost more than the wait. So the next read waits first (the socket is *drained*) and
reads when epoll says so. Nothing can be missed: the registration is
level-triggered, so bytes that did arrive meanwhile are reported by the very next
``poll``. TLS sockets never take this shortcut, since the TLS library may hold decrypted
bytes that epoll cannot see. Nor does a read that asks for nothing (``recv(0)`` is ``b""``
at once, as ``socket.recv(0)`` is), and closing a socket clears the flag: a closed socket
must reach its ``ClosedResourceError``, never a wait on fd -1.

An ``ssl.SSLSocket`` is taken only connected and not listening. The standard library
makes the TLS object of an SSLSocket when it connects, and only through a blocking
``connect``: a non-blocking one leaves it without TLS, and its ``accept`` returns plain
sockets, so either would send and receive plaintext. TLS on a connection of plait's comes
from ``open_connection(ssl=...)`` and ``serve(ssl=...)``, which wrap connected sockets.

Blocking points: ``accept``, ``connect``, ``recv*``, ``send*``, ``do_handshake`` — each can
be cancelled or timed out there. ``close`` never blocks: it tells the kernel to forget the
fd, wakes any task still waiting on it with :class:`ClosedResourceError`, and closes. Any
later operation raises :class:`ClosedResourceError` (an ``OSError`` with ``EBADF``).
Only one task at a time may wait to read (and one to write) on a socket; a second one
gets :class:`ResourceBusy`.

The hot methods, ``recv``, ``recv_into`` and ``sendall``, come from the base class
``_SocketCore``: the C core's ``plait._core._coro.SocketCore`` where it is built, whose
calls return awaitable C operations that make the system call on the fd and yield the
kernel's trap tuples themselves, with no Python frame; ``_PySocketCore``, the same
methods as coroutines, elsewhere. The C operations take the plain path, the drained
rule included: a plain ``socket.socket`` (a subclass may do more in its methods; it
and TLS sockets are not *plain*), no flags. They hand everything else to those
coroutines: TLS, flags, a closed socket, and the rest of a ``sendall`` whose first
``send`` was short (with ``bytes_sent`` if it is cancelled).

The rest of the standard API (``family``, ``getsockname``, ``setsockopt``, TLS's
``getpeercert``, ...) is handed to the wrapped socket by one property per name, made
when this module loads, not by ``__getattr__``: a class with ``__getattr__`` puts *every*
attribute read on the slow generic path, ``_io`` and ``_drained`` too, which CPython
cannot then specialize (several reads per echo request).

:class:`SocketStream` (``sock.as_stream()``) adds a read buffer to a :class:`Socket`:
``read``, ``read_exactly``, ``readline`` (and ``async for line in stream``) and
``write``. ``write`` is awaited and returns only when every byte is in the kernel's
socket buffer, so a writer that outruns its peer waits there (backpressure); there is
no unbounded write buffer. With an empty buffer ``read`` *is* the socket's ``recv``
(tried before any wait unless the last read drained the socket), and ``write`` *is* its
``sendall``: both are plain methods (from ``_StreamCore``, in C where the core is
built) that hand back the socket's awaitable, so an echo server on streams runs the
same frames as one on bare sockets, and the receive and send loops exist once.
"""

from __future__ import annotations

import errno
import socket as _socket
import ssl as _ssl
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from . import traps
from .errors import ClosedResourceError, IncompleteRead

try:
    from plait._core import _coro
except ImportError:  # not built (not Linux): the Python core below does the same
    _coro = None

__all__ = ["Socket", "SocketStream", "WOULD_BLOCK_READ", "WOULD_BLOCK_WRITE", "wrap"]

# What a non-blocking call raises when it must wait for readability/writability. A TLS
# socket may need to read in order to write and the other way round.
WOULD_BLOCK_READ = (BlockingIOError, InterruptedError, _ssl.SSLWantReadError)
WOULD_BLOCK_WRITE = (BlockingIOError, InterruptedError, _ssl.SSLWantWriteError)

_read_wait = traps.read_wait
_write_wait = traps.write_wait


async def _recv(self: Socket, maxsize: int, flags: int = 0) -> bytes:
    # A closed socket goes straight to its _Closed, whose recv raises (close clears
    # _drained too); recv(0) and a negative size go straight to the socket's b"" or
    # ValueError, as in the standard library.
    if self._drained and maxsize > 0 and self._fileno >= 0:
        self._drained = False
        await _read_wait(self._fileno, self)
    while True:
        try:
            data = self._io.recv(maxsize, flags)
            if len(data) < maxsize:
                self._drained = self._plain
            return data
        except WOULD_BLOCK_READ:
            await _read_wait(self._fileno, self)
        except _ssl.SSLWantWriteError:
            await _write_wait(self._fileno, self)


async def _recv_into(self: Socket, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
    if self._drained and self._fileno >= 0 and (nbytes or len(buffer)) > 0:  # as in _recv
        self._drained = False
        await _read_wait(self._fileno, self)
    while True:
        try:
            count = self._io.recv_into(buffer, nbytes, flags)
            if count < (nbytes or len(buffer)):
                self._drained = self._plain
            return count
        except WOULD_BLOCK_READ:
            await _read_wait(self._fileno, self)
        except _ssl.SSLWantWriteError:
            await _write_wait(self._fileno, self)


async def _sendall(self: Socket, data: Any, flags: int = 0) -> None:
    try:
        sent = self._io.send(data, flags)
    except WOULD_BLOCK_WRITE:
        sent = 0
    except _ssl.SSLWantReadError:
        sent = 0
    # The byte count: len() of a typed buffer (an array('i'), a cast memoryview) counts
    # its items. Bytes, the common case, need no memoryview for it.
    if sent != (len(data) if data.__class__ is bytes else memoryview(data).nbytes):
        await _send_rest(self, data, sent, flags)


async def _send_rest(self: Socket, data: Any, sent: int, flags: int = 0) -> None:
    with memoryview(data).cast("B") as view:
        total = len(view)
        try:
            while sent < total:
                try:
                    sent += self._io.send(view[sent:], flags)
                except WOULD_BLOCK_WRITE:
                    await _write_wait(self._fileno, self)
                except _ssl.SSLWantReadError:
                    await _read_wait(self._fileno, self)
        except BaseException as e:
            e.bytes_sent = sent
            raise


class _PySocketCore:
    """The fields and hot methods of :class:`Socket` in Python: its base class where the
    C core (``plait._core._coro.SocketCore``, the same names) is not built."""

    __slots__ = ("_io", "_fileno", "_drained", "_plain", "_registration")

    recv = _recv
    recv_into = _recv_into
    sendall = _sendall


if _coro is not None:
    _coro.set_fallbacks(_recv, _recv_into, _sendall, _send_rest, traps._outside)
    _SocketCore: type = _coro.SocketCore
else:
    _SocketCore = _PySocketCore


class Socket(_SocketCore):
    """An awaitable socket. ``Socket(sock, name=None)`` takes ownership of ``sock``;
    ``name`` is what its errors call it (``ClosedResourceError``), ``"socket fd N"`` by default.

    >>> import socket
    >>> from plait.coro import run, tcp_server_socket
    >>> async def main():
    ...     async with tcp_server_socket("127.0.0.1", 0) as server:
    ...         sock = Socket(socket.socket())
    ...         await sock.connect(server.getsockname())
    ...         client, _ = await server.accept()
    ...         async with sock, client:
    ...             await sock.sendall(b"ping")
    ...             return await client.recv(100)
    >>> run(main)
    b'ping'
    """

    __slots__ = ("_socket", "_name", "__weakref__")

    def __init__(self, sock: _socket.socket, name: str | None = None) -> None:
        if isinstance(sock, Socket):
            raise TypeError("this socket is already a plait.coro Socket")
        if isinstance(sock, _ssl.SSLSocket):
            _check_tls(sock)
        sock.setblocking(False)
        self._socket = sock
        # The object of recv/send calls: the socket, or a _Closed once closed. Its methods
        # are looked up per call, not cached bound in a slot: CPython specializes a method
        # call on a socket, but not one read from a slot, and with thousands of
        # connections the cached bound method is one more object out of the cache.
        self._io: Any = sock
        self._fileno = sock.fileno()
        self._name = name or f"socket fd {self._fileno}"  # what a ClosedResourceError names
        # A plain socket.socket: the C core may make its system calls on the fd, and a
        # short read drains it (see "drained" in the module notes); never TLS, whose
        # library buffers data, nor a subclass, whose methods may do more.
        self._plain = sock.__class__ is _socket.socket
        self._drained = False
        self._registration = None  # the kernel's weak hold on it (kernel.py, _Registration)

    def __repr__(self) -> str:
        return f"<plait.coro.Socket {self._socket!r}>"

    if TYPE_CHECKING:
        # The rest of the wrapped socket's API: one property per name (see _delegate).
        def __getattr__(self, name: str) -> Any: ...

        # The hot methods, from _SocketCore.
        async def recv(self, maxsize: int, flags: int = 0) -> bytes:
            """Receive up to ``maxsize`` bytes; ``b""`` at end of stream. Blocks until data."""

        async def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
            """Receive into ``buffer``; return the count (0 at end of stream)."""

        async def sendall(self, data: Any, flags: int = 0) -> None:
            """Send all of ``data``. Blocks while the peer's window is full (backpressure).

            If cancelled midway, the bytes already sent are not taken back; the exception
            carries ``bytes_sent``.
            """

    def fileno(self) -> int:
        """The fd, or -1 once closed."""
        return self._fileno

    @property
    def socket(self) -> _socket.socket:
        """The underlying (non-blocking) standard socket."""
        return self._socket

    def as_stream(self) -> SocketStream:
        """A buffered :class:`SocketStream` over this socket (which it then owns)."""
        return SocketStream(self)

    # -- receiving (recv and recv_into: see _SocketCore) ------------------------------

    async def recvfrom(self, maxsize: int, flags: int = 0) -> tuple[bytes, Any]:
        """Receive a datagram and its sender's address."""
        while True:
            try:
                return self._checked().recvfrom(maxsize, flags)
            except WOULD_BLOCK_READ:
                await _read_wait(self._fileno, self)

    async def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        """Receive a datagram into ``buffer``; return (count, address)."""
        while True:
            try:
                return self._checked().recvfrom_into(buffer, nbytes, flags)
            except WOULD_BLOCK_READ:
                await _read_wait(self._fileno, self)

    # -- sending (sendall: see _SocketCore) ------------------------------------------

    async def send(self, data: Any, flags: int = 0) -> int:
        """Send some of ``data``; return how many bytes went. Blocks until some can go."""
        while True:
            try:
                return self._io.send(data, flags)
            except WOULD_BLOCK_WRITE:
                await _write_wait(self._fileno, self)
            except _ssl.SSLWantReadError:
                await _read_wait(self._fileno, self)

    async def sendto(self, data: Any, address: Any, flags: int = 0) -> int:
        """Send a datagram to ``address``."""
        while True:
            try:
                return self._checked().sendto(data, flags, address)
            except WOULD_BLOCK_WRITE:
                await _write_wait(self._fileno, self)

    # -- connections -------------------------------------------------------------------

    async def accept(self) -> tuple[Socket, Any]:
        """Wait for a connection; return ``(Socket, address)``."""
        while True:
            try:
                client, addr = self._checked()._accept()
                return Socket(
                    _socket.socket(
                        fileno=client,
                        family=self._socket.family,
                        type=self._socket.type,
                        proto=self._socket.proto,
                    )
                ), addr
            except WOULD_BLOCK_READ:
                await _read_wait(self._fileno, self)

    async def connect(self, address: Any) -> None:
        """Connect to ``address``; raises ``ConnectionRefusedError`` etc. naming it.

        Blocks until connected; for a Unix socket whose listener's backlog is full, until
        the listener makes room, as a blocking ``connect`` does.
        """
        sock = self._checked()
        try:
            sock.connect(address)
            return
        except WOULD_BLOCK_WRITE as e:
            # EINPROGRESS (or EINTR): the connection is under way, and the fd becomes
            # writable when it is made or has failed. EAGAIN: no connection is under way,
            # and the fd is writable at once, so a wait would report a connection that is
            # not there.
            if e.errno == errno.EAGAIN:
                if sock.family != _socket.AF_UNIX:  # no free local port, for instance
                    raise OSError(e.errno, f"connect to {address!r} failed: {e.strerror}") from e
                await self._connect_when_room(address)
                return
        await _write_wait(self._fileno, self)
        err = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR)
        if err:
            raise OSError(err, f"connect to {address!r} failed: {errno.errorcode.get(err, err)}")

    async def _connect_when_room(self, address: Any) -> None:
        """Try a Unix connect again until the listener's backlog has room.

        Nothing tells when it has (the fd is writable all along), so the task sleeps
        between tries: 1 ms at first, doubling up to 100 ms. The caller's timeout or a
        cancellation ends the tries; ``close`` from another task ends them with
        ``ClosedResourceError``.
        """
        delay = 0.001
        while True:
            await traps.sleep(delay)
            try:
                self._checked().connect(address)
                return
            except BlockingIOError as e:
                if e.errno != errno.EAGAIN:
                    raise
            delay = min(delay * 2, 0.1)

    async def do_handshake(self) -> None:
        """Run the TLS handshake of an ``ssl.SSLSocket`` (``do_handshake_on_connect=False``)."""
        sock = self._checked()
        while True:
            try:
                sock.do_handshake()
                return
            except WOULD_BLOCK_READ:
                await _read_wait(self._fileno, self)
            except _ssl.SSLWantWriteError:
                await _write_wait(self._fileno, self)

    def shutdown(self, how: int) -> None:
        """Shut down one or both directions (never blocks)."""
        self._checked().shutdown(how)

    # -- closing -----------------------------------------------------------------------

    def _checked(self) -> _socket.socket:
        if self._fileno < 0:
            raise ClosedResourceError(self._name)
        return self._socket

    async def close(self) -> None:
        """Close the socket (never blocks). Tasks waiting on it get ClosedResourceError."""
        self.close_nowait()

    def close_nowait(self) -> None:
        """``close`` for synchronous code that runs inside the kernel's thread."""
        if self._fileno < 0:
            return
        k = traps.state.kernel
        if k is not None:
            k.release_fd(self._fileno)
        self._fileno = -1
        self._drained = False  # a read of a closed socket must not wait first
        self._io = _Closed(self._name)
        self._socket.close()

    async def __aenter__(self) -> Socket:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close_nowait()


def _read(self: SocketStream, maxbytes: int = -1) -> Awaitable[bytes]:
    if maxbytes >= 0 and not self._buffer:
        # the hot path: the socket's own recv, no frame of the stream's in between
        return self._sock.recv(maxbytes)
    return self._read_buffered(maxbytes)


def _write(self: SocketStream, data: bytes | bytearray | memoryview) -> Awaitable[None]:
    return self._sock.sendall(data)


class _PyStreamCore:
    """The fields and hot methods of :class:`SocketStream` in Python: its base class where
    the C core (``plait._core._coro.StreamCore``, the same names) is not built."""

    __slots__ = ("_sock", "_buffer")

    read = _read
    write = _write


_StreamCore: type = _coro.StreamCore if _coro is not None else _PyStreamCore


class SocketStream(_StreamCore):
    """A buffered byte stream over a :class:`Socket` (which the stream then owns)."""

    __slots__ = ()

    def __init__(self, sock: Socket) -> None:
        self._sock = sock
        self._buffer = bytearray()

    def __repr__(self) -> str:
        return f"<plait.coro.SocketStream {self._sock!r}>"

    if TYPE_CHECKING:
        # The hot methods, from _StreamCore.
        def read(self, maxbytes: int = -1) -> Awaitable[bytes]:
            """Up to ``maxbytes`` bytes (all until end of stream if negative); ``b""`` at
            end. Blocks until at least one byte (or end of stream) is there.
            """

        def write(self, data: bytes | bytearray | memoryview) -> Awaitable[None]:
            """Send all of ``data``; blocks while the peer does not keep up (backpressure).

            This is the socket's ``sendall``; if cancelled midway, the exception carries
            ``bytes_sent``.
            """

    @property
    def socket(self) -> Socket:
        """The :class:`Socket` under the stream."""
        return self._sock

    async def _read_buffered(self, maxbytes: int) -> bytes:
        buffer = self._buffer
        if buffer:
            if maxbytes < 0 or maxbytes >= len(buffer):
                data = bytes(buffer)
                buffer.clear()
            else:
                data = bytes(buffer[:maxbytes])
                del buffer[:maxbytes]
            if maxbytes >= 0:
                return data
            return data + await self._read_buffered(-1)
        recv = self._sock.recv
        chunks = []
        while True:
            chunk = await recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    async def read_exactly(self, nbytes: int) -> bytes:
        """Exactly ``nbytes`` bytes; raises :class:`IncompleteRead` (``EOFError``) if the
        stream ends first (``partial`` holds what came). Blocks until they are all there.
        """
        if nbytes < 0:
            raise ValueError(f"read_exactly needs a count of 0 or more bytes, got {nbytes}")
        buffer = self._buffer
        while len(buffer) < nbytes:
            chunk = await self._sock.recv(max(65536, nbytes - len(buffer)))
            if not chunk:
                partial = bytes(buffer)
                buffer.clear()
                raise IncompleteRead(partial, nbytes)
            buffer += chunk
        data = bytes(buffer[:nbytes])
        del buffer[:nbytes]
        return data

    async def readline(self, limit: int = 65536) -> bytes:
        """One line, ``b"\\n"`` included (the rest of the stream if it ends without one).

        Blocks until a whole line is there. Raises ``ValueError`` naming the limit if no
        newline comes within ``limit`` bytes (the bytes stay buffered).
        """
        buffer = self._buffer
        start = 0
        while True:
            end = buffer.find(b"\n", start, limit)  # a newline past the limit is too late
            if end >= 0:
                end += 1
                line = bytes(buffer[:end])
                del buffer[:end]
                return line
            if len(buffer) >= limit:
                raise ValueError(f"no newline within {limit} bytes (readline limit)")
            start = len(buffer)
            chunk = await self._sock.recv(65536)
            if not chunk:
                line = bytes(buffer)
                buffer.clear()
                return line
            buffer += chunk

    def __aiter__(self) -> SocketStream:
        return self

    async def __anext__(self) -> bytes:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line

    async def writelines(self, lines: Any) -> None:
        """``write`` each item of ``lines`` in turn."""
        for line in lines:
            await self.write(line)

    async def close(self) -> None:
        """Close the stream and its socket (never blocks)."""
        self._sock.close_nowait()

    async def __aenter__(self) -> SocketStream:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._sock.close_nowait()


def _check_tls(sock: _ssl.SSLSocket) -> None:
    """Refuse an SSLSocket that would talk plaintext (see the module notes)."""
    if sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ACCEPTCONN):
        raise ValueError(
            "a listening ssl.SSLSocket accepts plain sockets, without TLS: listen on a "
            "plain socket and pass the context as serve(..., ssl=context)"
        )
    try:
        sock.getpeername()
    except OSError as e:
        raise ValueError(
            "an ssl.SSLSocket that is not connected would connect without TLS: use "
            "open_connection(host, port, ssl=context), or wrap a connected socket"
        ) from e


class _Closed:
    """What a closed :class:`Socket` calls instead of its socket: every call raises."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def _raise(self, *args: Any) -> Any:
        raise ClosedResourceError(self.name)

    recv = recv_into = send = _raise


def _delegate(name: str) -> property:
    def get(self: Socket) -> Any:
        return getattr(self._socket, name)

    return property(get, doc=f"The wrapped socket's ``{name}``.")


# SSLSocket's names include socket.socket's; these four are instance attributes of it.
_SSL_INSTANCE = (
    "server_side",
    "server_hostname",
    "do_handshake_on_connect",
    "suppress_ragged_eofs",
)
for _name in (*dir(_ssl.SSLSocket), *_SSL_INSTANCE):
    if not _name.startswith("_") and not hasattr(Socket, _name):
        setattr(Socket, _name, _delegate(_name))
del _name


def wrap(sock: _socket.socket | Socket) -> Socket:
    """``sock`` as a :class:`Socket` (unchanged if it already is one)."""
    return sock if isinstance(sock, Socket) else Socket(sock)
