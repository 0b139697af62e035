"""Servers and connections: the accept loop, listening sockets and connecting ones.

Servers: ``tcp_server_socket``/``unix_server_socket`` make a listening :class:`Socket`
(errors name the address: "port in use" says which port); ``serve`` accepts forever and
runs ``handler(client, address)`` as a task per connection. A handler that raises is
logged with the client's address and the server goes on; its connection is closed when
the handler ends, however it ends. Cancelling the server cancels its handlers and waits
for them. ``tcp_server``/``unix_server`` are listen + serve in one call.

An ``accept`` that fails does not end the server either, as in asyncio and trio. Out of
fds or memory (``EMFILE``, ``ENFILE``, ``ENOBUFS``, ``ENOMEM``): the server logs an error
and stops accepting for a moment (the clients wait in the listen backlog); the handlers
already running go on and, as they end, free what the next ``accept`` needs. A
connection that failed in the backlog (``ECONNABORTED``, and the network errors Linux
hands on from ``accept``): the server takes the next one. Any other error, such as the
listener closed under it, ends the server.

Clients: ``open_connection(host, port)``/``open_unix_connection(path)`` return a connected
:class:`Socket`. TLS: pass an ``ssl.SSLContext`` as ``ssl=`` on either side; the handshake
runs before the handler or the caller gets the socket. A server lets go of a client that
has not finished its handshake after ``handshake_timeout`` (60 s, as in asyncio).
"""

from __future__ import annotations

import errno
import logging
import os
import socket as _socket
import ssl as _ssl
from collections.abc import Awaitable, Callable
from typing import Any

from . import traps
from .sockets import Socket
from .task import as_coroutine
from .timeouts import ignore_after

__all__ = [
    "open_connection",
    "open_unix_connection",
    "serve",
    "tcp_server",
    "tcp_server_socket",
    "unix_server",
    "unix_server_socket",
]

log = logging.getLogger("plait.coro")


Handler = Callable[[Socket, Any], Awaitable[Any]]

# accept errors that leave the listener sound (see the module notes); the second set is
# trio's, after accept(2): Linux hands on a new connection's pending network error
_ACCEPT_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_PAUSE = 0.5  # seconds without accepting after one of those (asyncio: 1 s, trio: 0.1 s)
_ACCEPT_CONNECTION_FAILED = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNABORTED",
        "ECONNRESET",
        "EPROTO",
        "EPERM",
        "ETIMEDOUT",
        "ENETDOWN",
        "ENETUNREACH",
        "ENONET",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
    )
    if hasattr(errno, name)
)


def tcp_server_socket(
    host: str,
    port: int,
    *,
    backlog: int = 1024,
    reuse_address: bool = True,
    family: int = _socket.AF_INET,
) -> Socket:
    """A listening TCP :class:`Socket` on ``host:port`` (port 0: any free port).

    Raises ``OSError`` naming the address if it cannot listen (for instance the port is
    in use).
    """
    sock = _socket.socket(family, _socket.SOCK_STREAM)
    try:
        if reuse_address:
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as e:
        sock.close()
        reason = "address already in use" if e.errno == errno.EADDRINUSE else e.strerror
        raise OSError(e.errno, f"cannot listen on {host}:{port}: {reason}") from e
    return Socket(sock)


def unix_server_socket(path: str, *, backlog: int = 1024) -> Socket:
    """A listening Unix-domain :class:`Socket` at ``path`` (a stale socket file is
    replaced; any other existing file is an error naming the path)."""
    if os.path.exists(path):
        import stat

        if not stat.S_ISSOCK(os.stat(path).st_mode):
            raise FileExistsError(errno.EEXIST, f"{path} exists and is not a socket")
        os.unlink(path)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"cannot listen on {path}: {e.strerror}") from e
    return Socket(sock)


class _Clients:
    """The handler tasks of one :func:`serve`, each with its client socket and address.

    The kernel calls :meth:`task_done` when a handler's task ends, however it ends: the
    client is closed there and a failure is logged. The handler's coroutine is then the
    task's own, with no wrapper coroutine around it that every resumption would go
    through (a frame and its cache lines per request, on a busy server).
    """

    __slots__ = ("entries", "handshake_timeout")

    def __init__(self, handshake_timeout: float | None = None) -> None:
        self.entries: dict[Any, list] = {}  # task -> [client socket, address]
        self.handshake_timeout = handshake_timeout

    def add(self, handler: Handler, client: Socket, address: Any, context: Any) -> None:
        entry = [client, address]
        try:
            if context is None:
                coro, name = as_coroutine(handler, (client, address))
            else:
                name = "tls:" + getattr(handler, "__qualname__", repr(handler))
                coro = _tls_client(handler, entry, context, self.handshake_timeout)
        except Exception:
            client.close_nowait()
            log.exception("handler %r failed for client %r; the server goes on", handler, address)
            return
        self.entries[traps.kernel().start(coro, name, True, group=self)] = entry

    def task_done(self, task: Any) -> None:
        """Kernel hook: the handler's ``task`` has ended."""
        client, address = self.entries.pop(task)
        try:
            client.close_nowait()
        except OSError as e:  # raised here, it would stop the kernel, not one handler
            log.warning("closing the connection of client %r failed: %s", address, e)
        exc = task._exception
        if not isinstance(exc, Exception):  # done, cancelled, or fatal (that stops the kernel)
            return
        task._observed = True
        if isinstance(exc, ConnectionError):  # the client vanished: normal life for a server
            log.debug("client %r went away: %s", address, exc)
        elif isinstance(exc, _ssl.SSLError | _HandshakeTimeout):  # cannot or will not speak TLS
            log.warning("TLS with client %r failed: %s", address, exc)
        else:
            log.error(
                "handler %s failed for client %r; the server goes on",
                task.name,
                address,
                exc_info=(type(exc), exc, exc.__traceback__),
            )


def _wrap_tls(sock: Socket, context: _ssl.SSLContext, **kwargs: Any) -> Socket:
    """``sock``, which is connected, as a TLS :class:`Socket` (the handshake still to do).

    A peer that reset the connection meanwhile leaves the standard library's SSLSocket
    without TLS, which :class:`Socket` refuses; to the caller that is the peer gone.
    """
    raw = context.wrap_socket(sock.socket, do_handshake_on_connect=False, **kwargs)
    try:
        return Socket(raw)
    except ValueError as e:
        raw.close()
        raise ConnectionResetError(
            errno.ECONNRESET, "the peer reset the connection before the TLS handshake"
        ) from e


class _HandshakeTimeout(TimeoutError):
    """A client did not finish its TLS handshake within the server's handshake_timeout."""


async def _tls_client(
    handler: Handler, entry: list, context: _ssl.SSLContext, timeout: float | None
) -> Any:
    """The TLS handshake, then the handler on the TLS socket (which ``entry`` then holds).
    A client that does not finish its handshake in ``timeout`` s is let go: a silent one
    would hold its connection for ever, before any handler could time it out."""
    entry[0] = client = _wrap_tls(entry[0], context, server_side=True)  # it took over the fd
    if timeout is None:
        await client.do_handshake()
    else:
        async with ignore_after(timeout) as scope:
            await client.do_handshake()
        if scope.expired:
            raise _HandshakeTimeout(f"no TLS handshake within {timeout:g} s")
    return await handler(client, entry[1])


async def serve(
    server: Socket,
    handler: Handler,
    *,
    ssl: _ssl.SSLContext | None = None,
    handshake_timeout: float | None = 60.0,
) -> None:
    """Accept connections on ``server`` forever, one ``handler(client, address)`` task each.

    With ``ssl``, a client that has not finished its TLS handshake after
    ``handshake_timeout`` s (``None``: no limit; asyncio's default is 60 s too) is
    disconnected, with a warning in the log.

    Blocks until cancelled; then cancels the handlers still running, waits for them,
    and closes ``server``. A failed ``accept`` is logged or skipped (see the module
    notes); any other error ends the server as a cancellation does, and is raised.
    """
    if handshake_timeout is not None and (
        isinstance(handshake_timeout, bool)
        or not isinstance(handshake_timeout, int | float)
        or not handshake_timeout > 0
    ):
        raise ValueError(
            f"handshake_timeout must be a number of seconds > 0 or None, got {handshake_timeout!r}"
        )
    clients = _Clients(handshake_timeout)
    try:
        while True:
            try:
                client, address = await server.accept()
            except OSError as e:
                if e.errno in _ACCEPT_OUT_OF_RESOURCES:
                    log.error(
                        "accept on %s failed: %s; no new connections for %s s (the %d "
                        "running go on)",
                        server.getsockname(),
                        e,
                        _ACCEPT_PAUSE,
                        len(clients.entries),
                    )
                    await traps.sleep(_ACCEPT_PAUSE)
                    continue
                if e.errno in _ACCEPT_CONNECTION_FAILED:
                    log.debug(
                        "accept on %s: a connection failed in the backlog: %s",
                        server.getsockname(),
                        e,
                    )
                    continue
                raise
            if client.family != _socket.AF_UNIX:
                client.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            clients.add(handler, client, address, ssl)
    finally:
        server.close_nowait()
        for task in list(clients.entries):
            await task.cancel()


async def tcp_server(
    host: str,
    port: int,
    handler: Handler,
    *,
    ssl: _ssl.SSLContext | None = None,
    handshake_timeout: float | None = 60.0,
    backlog: int = 1024,
    reuse_address: bool = True,
) -> None:
    """Listen on ``host:port`` and :func:`serve` forever (until cancelled)."""
    sock = tcp_server_socket(host, port, backlog=backlog, reuse_address=reuse_address)
    await serve(sock, handler, ssl=ssl, handshake_timeout=handshake_timeout)


async def unix_server(path: str, handler: Handler, *, backlog: int = 1024) -> None:
    """Listen on the Unix socket ``path`` and :func:`serve` forever (until cancelled)."""
    await serve(unix_server_socket(path, backlog=backlog), handler)


async def open_connection(
    host: str,
    port: int,
    *,
    ssl: _ssl.SSLContext | bool | None = None,
    server_hostname: str | None = None,
    source_addr: tuple[str, int] | None = None,
) -> Socket:
    """Connect to ``host:port`` and return the :class:`Socket`. Blocks until connected.

    ``ssl=True`` uses ``ssl.create_default_context()``. Name resolution of a host that is
    not an address literal runs in a worker thread. Raises ``OSError`` naming the address.
    """
    try:
        infos = [(_socket.AF_INET6 if ":" in host else _socket.AF_INET, (host, port))]
        _socket.inet_pton(infos[0][0], host)
    except OSError:
        from .threads import run_in_thread

        found = await run_in_thread(_socket.getaddrinfo, host, port, 0, _socket.SOCK_STREAM)
        infos = [(family, addr) for family, _, _, _, addr in found]
    error: OSError | None = None
    for family, addr in infos:
        sock = Socket(_socket.socket(family, _socket.SOCK_STREAM))
        try:
            if source_addr is not None:
                sock.bind(source_addr)
            await sock.connect(addr)
        except OSError as e:
            sock.close_nowait()
            error = e
            continue
        except BaseException:
            sock.close_nowait()
            raise
        if family != _socket.AF_UNIX:
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        if ssl:
            return await _client_tls(sock, ssl, server_hostname or host)
        return sock
    raise OSError(
        error.errno if error else errno.EHOSTUNREACH,
        f"cannot connect to {host}:{port}: {error.strerror if error else 'no address'}",
    )


async def _client_tls(sock: Socket, ssl: _ssl.SSLContext | bool, hostname: str) -> Socket:
    context = _ssl.create_default_context() if ssl is True else ssl
    tls = _wrap_tls(sock, context, server_hostname=hostname)
    try:
        await tls.do_handshake()
    except BaseException:
        tls.close_nowait()
        raise
    return tls


async def open_unix_connection(path: str) -> Socket:
    """Connect to the Unix socket at ``path``. Raises ``OSError`` naming the path."""
    sock = Socket(_socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM))
    try:
        await sock.connect(path)
    except OSError as e:
        sock.close_nowait()
        raise OSError(e.errno, f"cannot connect to {path}: {e.strerror}") from e
    except BaseException:
        sock.close_nowait()
        raise
    return sock
