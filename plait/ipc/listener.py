"""``Listener`` and ``Client``: connections between unrelated processes, as in
``multiprocessing.connection``.

Theory of operation
-------------------
A listener is a listening socket: ``AF_UNIX`` (a path, or an abstract name starting
with a NUL byte; the default, in a fresh private directory) or ``AF_INET``/``AF_INET6``
(a ``(host, port)`` tuple; port 0 picks a free one). Unix listeners use
``SOCK_SEQPACKET``, so their connections are as fast as a ``Pipe`` and can carry fds;
TCP ones are streams with ``TCP_NODELAY``. ``accept`` returns a ``Connection``, and so
does ``Client``. The wire protocol is plait's (see ``plait._core.framing``): a plait
client talks to a plait listener, not to the standard library's.

With an ``authkey`` both ends run the handshake of ``auth`` (HMAC-SHA256 challenges in
both directions) before ``accept`` or ``Client`` returns, so no byte is unpickled before
both ends proved they hold the key. The handshake has a time limit
(``handshake_timeout``) so that a silent client cannot hold ``accept`` for long; a client
that fails it (wrong key, garbage, an enormous announced length, disconnecting midway)
makes that ``accept`` raise ``AuthenticationError``, and the next ``accept`` serves the
next client. Such errors are the caller's to catch, as this server does, which serves
the client that holds the key after one that does not:

>>> from plait.multiprocessing import AuthenticationError
>>> from plait.threads import Thread
>>> listener = Listener(authkey=b"the key")
>>> def send_hello(key):
...     try:
...         with Client(listener.address, authkey=key) as conn:
...             conn.send(f"hello from the holder of {key!r}")
...     except AuthenticationError:
...         pass  # the listener refused the key
>>> clients = Thread(target=lambda: [send_hello(b"a wrong key"), send_hello(b"the key")])
>>> clients.start()
>>> def accept(listener):
...     while True:
...         try:
...             return listener.accept()
...         except AuthenticationError:
...             continue  # a client without the key: serve the next one
>>> with accept(listener) as conn:
...     conn.recv(timeout=5)
"hello from the holder of b'the key'"
>>> listener.close(); clients.join(5)

Failures name the address: a port in use, a path that exists, a dead address to
connect to (``ConnectionRefusedError``/``FileNotFoundError`` at once, no retrying).

The rest of the standard module's surface: ``families`` (the families a listener can
use here), ``default_family``, ``address_type``, ``arbitrary_address``,
``SocketListener``/``SocketClient`` (a listener and a client without authentication;
the standard library's lower layer, here the same classes with no key), and
``XmlListener``/``XmlClient``, whose connections carry what ``xmlrpc`` can encode
instead of pickles. A Windows named pipe address (``\\\\.\\pipe\\...``, family
``AF_PIPE``) raises ``ValueError`` naming the families to use instead.
"""

from __future__ import annotations

import errno
import os
import secrets
import select
import shutil
import socket
import tempfile
from typing import Any

from plait._core.framing import MAX_MESSAGE_SIZE
from plait.ipc import auth
from plait.ipc.connection import Connection, ConnectionWrapper, _milliseconds

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "Client",
    "Listener",
    "SocketClient",
    "SocketListener",
    "XmlClient",
    "XmlListener",
    "address_type",
    "arbitrary_address",
    "default_family",
    "families",
    "xml_dumps",
    "xml_loads",
]

HANDSHAKE_TIMEOUT = 10.0
families = ["AF_INET", "AF_UNIX"]  # as the standard library's list; AF_INET6 works too
default_family = "AF_UNIX"
_FAMILIES = ("AF_UNIX", "AF_INET", "AF_INET6")


def address_type(address: Any) -> str:
    """The family of ``address``: ``'AF_INET'`` for a ``(host, port)`` tuple
    (``'AF_INET6'`` for a 4-tuple), ``'AF_UNIX'`` for a path or an abstract name,
    ``'AF_PIPE'`` for a Windows pipe name (which no listener here accepts).

    Raises ``TypeError`` for anything else, as the standard library.
    """
    if isinstance(address, tuple):
        return "AF_INET6" if len(address) == 4 else "AF_INET"
    if isinstance(address, str) and address.startswith("\\\\"):
        return "AF_PIPE"
    if isinstance(address, str | bytes):
        return "AF_UNIX"
    raise TypeError(f"address type of {address!r} unrecognized")


def arbitrary_address(family: str) -> Any:
    """A fresh address of ``family`` for a listener: a new path in the temporary
    directory for ``'AF_UNIX'``, ``('localhost', 0)`` for ``'AF_INET'`` (the system picks
    the port when the listener binds). Raises ``ValueError`` for another family."""
    if family == "AF_INET":
        return ("localhost", 0)
    if family == "AF_INET6":
        return ("::1", 0)
    if family == "AF_UNIX":
        return os.path.join(tempfile.gettempdir(), f"plait-listener-{secrets.token_hex(8)}")
    _check_family(family)
    raise ValueError(f"unrecognized family {family!r}")


def _check_family(family: str) -> socket.AddressFamily:
    if family not in _FAMILIES:
        hint = (
            "; named pipes are Windows-only: use an AF_UNIX path or an AF_INET (host, port)"
            if family == "AF_PIPE"
            else f"; use one of {', '.join(_FAMILIES)}"
        )
        raise ValueError(f"Family {family} is not recognized{hint}.")
    return getattr(socket, family)


def _is_abstract(address: Any) -> bool:
    return isinstance(address, str | bytes) and address[:1] in ("\0", b"\0")


def _new_socket(family: str) -> socket.socket:
    kind = socket.SOCK_SEQPACKET if family == "AF_UNIX" else socket.SOCK_STREAM
    return socket.socket(_check_family(family), kind)


def _tune(sock: socket.socket) -> None:
    if sock.family != socket.AF_UNIX:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Listener:
    """A listening socket whose ``accept`` returns (authenticated) connections.

    ``Listener(address=None, family=None, backlog=1, authkey=None)`` as in the standard
    library; keyword-only extras: ``handshake_timeout`` (seconds allowed for a client's
    handshake) and ``max_message_size`` (of the accepted connections). Raises ``OSError``
    naming the address when it cannot listen there (in use, no permission), ``TypeError``
    for an authkey that is not bytes, ``ValueError`` for an unknown family.
    """

    def __init__(
        self,
        address: Any = None,
        family: str | None = None,
        backlog: int = 1,
        authkey: bytes | None = None,
        *,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        max_message_size: int = MAX_MESSAGE_SIZE,
    ) -> None:
        self._socket: socket.socket | None = None
        self._tempdir: str | None = None
        if authkey is not None and not isinstance(authkey, bytes):
            raise TypeError("authkey should be a byte string")
        family = family or (address_type(address) if address is not None else default_family)
        sock = _new_socket(family)
        if address is None:
            if family == "AF_UNIX":
                self._tempdir = tempfile.mkdtemp(prefix="plait-")
                address = os.path.join(self._tempdir, "listener")
            else:
                address = ("::1", 0) if family == "AF_INET6" else ("localhost", 0)
        try:
            if family != "AF_UNIX":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(backlog)
        except OSError as exc:
            sock.close()
            self._remove_tempdir()
            raise OSError(exc.errno, f"cannot listen on {address!r}: {exc.strerror}") from None
        except BaseException:
            sock.close()
            self._remove_tempdir()
            raise
        self._socket = sock
        self._family = family
        self._address = sock.getsockname() if family != "AF_UNIX" else address
        self._unlink = family == "AF_UNIX" and not _is_abstract(address)
        self._pid = os.getpid()  # the socket file belongs to this process, not to a fork
        self._authkey = authkey
        self._handshake_timeout = handshake_timeout
        self._max_message_size = max_message_size
        self._last_accepted: Any = None

    @property
    def address(self) -> Any:
        """The address the listener is bound to (the real port when 0 was asked)."""
        return self._address

    @property
    def last_accepted(self) -> Any:
        """The address of the last accepted connection's peer, or None."""
        return self._last_accepted

    def fileno(self) -> int:
        """The listening socket's fd (readable when a client is waiting)."""
        if self._socket is None:
            raise OSError("listener is closed")
        return self._socket.fileno()

    def accept(self, *, timeout: float | None = None) -> Connection:
        """Accept one client and, with an authkey, authenticate it.

        Blocks until a client connects, or ``timeout`` seconds (``TimeoutError``; None
        waits forever), then up to ``handshake_timeout`` for its handshake. Raises
        ``AuthenticationError`` for a client that fails the handshake (it is
        disconnected; the listener keeps serving), ``OSError`` if closed.
        """
        if self._socket is None:
            raise OSError("listener is closed")
        if timeout is not None:
            poller = select.poll()
            poller.register(self._socket.fileno(), select.POLLIN)
            if not poller.poll(_milliseconds(timeout)):
                raise TimeoutError(f"no client connected to {self._address!r} within {timeout} s")
        sock, peer = self._socket.accept()
        self._last_accepted = peer
        try:
            sock.setblocking(True)
            _tune(sock)
            conn = Connection(sock.detach(), max_message_size=self._max_message_size)
        finally:
            sock.close()
        if self._authkey is not None:
            try:
                auth.serve_handshake(
                    conn,
                    self._authkey,
                    self._handshake_timeout,
                    f"client {peer!r} of {self.address!r}",
                )
            except BaseException:
                conn.close()
                raise
        return conn

    def close(self) -> None:
        """Stop listening (idempotent); removes the socket file of a Unix listener,
        unless this is a forked copy (the process that made it still listens there)."""
        sock, self._socket = self._socket, None
        if sock is None:
            return
        sock.close()
        if self._pid != os.getpid():
            self._tempdir = None
            return
        if self._unlink:
            try:
                os.unlink(self._address)
            except OSError:
                pass
        self._remove_tempdir()

    def _remove_tempdir(self) -> None:
        tempdir, self._tempdir = self._tempdir, None
        if tempdir is not None:
            shutil.rmtree(tempdir, ignore_errors=True)

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_socket", None) is not None:
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self._socket is None else "listening"
        return f"<plait.ipc.Listener {self._address!r} {state}>"


def Client(  # noqa: N802 - the standard library's name
    address: Any,
    family: str | None = None,
    authkey: bytes | None = None,
    *,
    timeout: float = HANDSHAKE_TIMEOUT,
    max_message_size: int = MAX_MESSAGE_SIZE,
) -> Connection:
    """Connect to the listener at ``address``; with an ``authkey``, authenticate both ways.

    Blocks up to ``timeout`` seconds to connect and as long again for the handshake.
    Raises ``ConnectionRefusedError``/``FileNotFoundError`` (naming the address) at once
    when nobody listens there, ``TimeoutError`` when the connection does not complete in
    time, ``AuthenticationError`` when the handshake fails, ``TypeError`` for an authkey
    that is not bytes.
    """
    if authkey is not None and not isinstance(authkey, bytes):
        raise TypeError("authkey should be a byte string")
    family = family or address_type(address)
    sock = _new_socket(family)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except TimeoutError:
            raise TimeoutError(f"cannot connect to {address!r} within {timeout:g} s") from None
        except OSError as exc:
            hint = " (not a plait Listener?)" if exc.errno == errno.EPROTOTYPE else ""
            raise OSError(
                exc.errno, f"cannot connect to {address!r}: {exc.strerror}{hint}"
            ) from None
        sock.setblocking(True)
        _tune(sock)
        conn = Connection(sock.detach(), max_message_size=max_message_size)
    finally:
        sock.close()
    if authkey is not None:
        try:
            auth.client_handshake(conn, authkey, timeout, f"listener {address!r}")
        except BaseException:
            conn.close()
            raise
    return conn


class SocketListener(Listener):
    """A ``Listener`` that never authenticates: ``SocketListener(address, family,
    backlog=1)``, the standard library's lower layer under the same signature."""

    def __init__(self, address: Any, family: str, backlog: int = 1, **options: Any) -> None:
        super().__init__(address, family, backlog, None, **options)


def SocketClient(address: Any, **options: Any) -> Connection:  # noqa: N802 - standard name
    """``Client(address)`` without authentication: a connection to a ``SocketListener``."""
    return Client(address, **options)


def xml_dumps(obj: Any) -> bytes:
    """``obj`` as one XML-RPC document (what ``xmlrpc.client`` can encode; ``None`` too)."""
    import xmlrpc.client  # noqa: PLC0415 - only XML connections pay for it

    return xmlrpc.client.dumps((obj,), None, None, None, 1).encode("utf-8")


def xml_loads(data: bytes) -> Any:
    """The object of an XML-RPC document made by ``xml_dumps``."""
    import xmlrpc.client  # noqa: PLC0415 - only XML connections pay for it

    (obj,), _ = xmlrpc.client.loads(data.decode("utf-8"))
    return obj


class XmlListener(Listener):
    """A ``Listener`` whose connections carry XML-RPC documents instead of pickles: what
    ``xmlrpc.client`` can encode (numbers, strings, lists, dicts...), nothing that runs
    code when it is read."""

    def accept(self, *, timeout: float | None = None) -> ConnectionWrapper:
        """Accept one client, as ``Listener.accept``; its connection speaks XML-RPC."""
        return ConnectionWrapper(super().accept(timeout=timeout), xml_dumps, xml_loads)


def XmlClient(*args: Any, **kwargs: Any) -> ConnectionWrapper:  # noqa: N802 - standard name
    """``Client(...)`` to an ``XmlListener``: the connection speaks XML-RPC."""
    return ConnectionWrapper(Client(*args, **kwargs), xml_dumps, xml_loads)
