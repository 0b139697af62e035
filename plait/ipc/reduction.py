"""``multiprocessing.reduction`` on plait: the pickler, reducers, and passing fds.

- ``ForkingPickler`` is a ``pickle.Pickler`` of protocol 5 with the classmethods
  ``register``, ``dumps`` and ``loads`` of the standard class. ``register(type,
  reduce)`` (and the module's ``register``) adds a reducer that every plait channel
  honours: pipes, queues, pools, managers and the arguments of a child (see
  ``plait._core.serialization.register_reducer``).
- ``DupFd(fd)`` (``plait._core.fdpass``) is an fd that travels inside a pickle: it is
  dup'd on creation, sent beside the message (``SCM_RIGHTS``, or inherited by a child
  under spawn and forkserver), and ``detach()`` gives the receiver its own fd. Like every
  fd-owning object it can only be pickled while its fd travels with it.
- ``send_handle(conn, fd, pid)`` and ``recv_handle(conn)`` move one fd through a
  ``Connection`` over a Unix socket, beside its messages as ``multiprocessing`` does;
  ``sendfds``/``recvfds`` through a Unix socket.
"""

from __future__ import annotations

import array
import copyreg
import io
import os
import pickle
import select
import socket
import sys
from typing import Any

from plait._core import fdpass, serialization
from plait._core.fdpass import DupFd

__all__ = [
    "send_handle",
    "recv_handle",
    "ForkingPickler",
    "register",
    "dump",
    "DupFd",
    "sendfds",
    "recvfds",
]

HAVE_SEND_HANDLE = True


class ForkingPickler(pickle.Pickler):
    """A protocol-5 pickler whose registered reducers every plait channel honours."""

    _extra_reducers: dict[type, Any] = {}
    _copyreg_dispatch_table = copyreg.dispatch_table

    def __init__(self, file: Any, protocol: int | None = None, **kwargs: Any) -> None:
        super().__init__(file, serialization.PROTOCOL if protocol is None else protocol, **kwargs)
        self.dispatch_table = copyreg.dispatch_table

    @classmethod
    def register(cls, type_: type, reduce: Any) -> None:
        """Pickle instances of ``type_`` as ``reduce(obj)`` says, in every channel."""
        serialization.register_reducer(type_, reduce)
        cls._extra_reducers[type_] = reduce

    @classmethod
    def dumps(cls, obj: Any, protocol: int | None = None) -> memoryview:
        """The pickle of ``obj`` as a memoryview (as the standard class returns it)."""
        buf = io.BytesIO()
        cls(buf, protocol).dump(obj)
        return buf.getbuffer()

    loads = staticmethod(pickle.loads)


register = ForkingPickler.register


def dump(obj: Any, file: Any, protocol: int | None = None) -> None:
    """Write the pickle of ``obj`` to the binary ``file``."""
    ForkingPickler(file, protocol).dump(obj)


def _socket_of(conn: Any) -> socket.socket:
    """A socket object on a dup of ``conn``'s fd. The dup shares the connection's file
    status flags, which a ``socket.setdefaulttimeout()`` would make non-blocking: a
    ``Connection`` is blocking, so it is put back so."""
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    sock.setblocking(True)
    return sock


def _wait(sock: socket.socket, events: int, timeout: float | None) -> None:
    poller = select.poll()
    poller.register(sock, events)
    if not poller.poll(None if timeout is None else max(0, int(timeout * 1000))):
        raise TimeoutError(f"no file descriptor arrived within {timeout} seconds")


def send_handle(conn: Any, handle: int, destination_pid: int | None = None) -> None:
    """Send a duplicate of the fd ``handle`` through ``conn`` (over a Unix socket).

    As in ``multiprocessing``, the fd travels beside one byte of its own, outside the
    connection's messages: the peer must take it with ``recv_handle``. Blocks while the
    peer's buffer is full.
    """
    with _socket_of(conn) as sock:
        _wait(sock, select.POLLOUT, None)
        sendfds(sock, [handle])


def recv_handle(conn: Any, *, timeout: float | None = None) -> int:
    """Receive an fd sent with ``send_handle``; the caller owns it.

    Blocks up to ``timeout`` (``None``: no limit, then ``TimeoutError``); raises
    ``RuntimeError`` if data came without an fd, ``EOFError`` if the peer is gone.
    """
    with _socket_of(conn) as sock:
        _wait(sock, select.POLLIN, timeout)
        return recvfds(sock, 1)[0]


def sendfds(sock: socket.socket, fds: list[int]) -> None:
    """Send ``fds`` over the Unix socket ``sock`` (one byte of data beside them)."""
    fds = list(fds)
    sock.sendmsg([bytes([len(fds) % 256])], fdpass.rights(fds))


def recvfds(sock: socket.socket, size: int) -> list[int]:
    """Receive ``size`` fds sent with ``sendfds``. Raises ``EOFError`` if none came,
    ``RuntimeError`` if another number of fds did (those are closed)."""
    item_size = array.array("i").itemsize
    msg, ancdata, _flags, _addr = sock.recvmsg(1, socket.CMSG_SPACE(size * item_size))
    if not msg and not ancdata:
        raise EOFError
    fds = fdpass.fds_from_ancillary(ancdata)
    if len(fds) != size or msg[0] != len(fds) % 256:
        fdpass.close_all(fds)
        raise RuntimeError(f"received {len(fds)} file descriptors, expected {size}")
    return fds


def stop_sharing(timeout: float | None = None) -> None:
    """Nothing to stop: ``DupFd`` needs no server (``multiprocessing`` runs one)."""


def allow_connection_pickling() -> None:
    """Does nothing: plait's connections can always be pickled into messages."""


# ``multiprocessing.reducer`` and ``ctx.reducer`` name this module itself.
reducer = sys.modules[__name__]
