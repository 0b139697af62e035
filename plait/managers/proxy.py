"""Proxies: the objects a client holds for objects that live in a manager's server.

Theory of operation
-------------------
A proxy is a ``Token`` (typeid, server address, object id) plus the way to call the
server. Calling a method sends **one request and reads one reply** (``protocol.py``) on a
connection that belongs to the calling thread.

Connections are per process, per thread, per server address, held by a ``_Client``
(the registry ``_clients``), opened on first use and authenticated both ways (HMAC,
``plait.ipc.auth``) before anything is unpickled. A proxy used from several threads
therefore never mixes two threads' replies, and needs no lock on the hot path. A
connection to a server on this machine (a Unix socket) asks for the server's rings in
its hello and then sends through shared memory (``rings.RingLink``, ``USE_RINGS``).

Lifetimes, without extra messages
---------------------------------
The server keeps an object while somebody holds it. The holders are *sessions* (one per
client process; every connection of the process says its session id in its first
message, the hello) and proxies living inside the server (a managed list stored in a
managed dict).
A client process counts its live proxies per object id; the first proxy of an id adds
an ``incref`` to the pending *control* list, the death of the last one a ``decref``. The
control list rides on the next request, so reference counting never costs a round trip.
When every connection of a session is closed (the client process ended, or was
SIGKILLed), the server drops everything the session held: objects a dead client created
are released.

A proxy that is pickled (to a child under spawn, into a queue, into another managed
object) adds a ``pin``: its object is kept for the life of the pickling session, so the
receiver can adopt it even if the sender drops its own proxy first (a proxy sent to its
own server needs no pin: the server holds it before the sender's later decref).
``fork`` pins every
live proxy the same way (an at-fork hook), and the child, a new session, adopts the
proxies it inherited on their first use: a proxy inherited across fork keeps working and
never uses its parent's connection.

Calls in a ``batch()`` block are not sent one by one: they are queued, return a
``concurrent.futures.Future`` each, and go to the server in one message per server
when the block ends (or every ``BATCH_LIMIT`` calls); the server answers with one
message holding all results. Many small calls then cost one round trip.

Errors: an exception raised by the method on the server is raised by the call, with the
server's traceback as its ``__cause__`` (``RemoteTraceback``). As in the standard
library, a method that is not exposed raises ``RemoteError`` (here ``NotExposedError``,
an ``AttributeError`` too), and so does a ``create`` whose callable failed (its text
is the server's traceback). A server that is gone (shut down, killed) makes every
later call raise ``ManagerGoneError`` naming the address, the typeid and the method.

Connections come from ``serializers.listener_client[serializer]``: pickles, or
XML-RPC documents for ``serializer='xmlrpclib'`` (no rings then).
"""

from __future__ import annotations

import os
import threading
import traceback
import weakref
from concurrent.futures import Future
from typing import Any

from plait._core.errors import AuthenticationError
from plait.ipc.listener import HANDSHAKE_TIMEOUT
from plait.managers import rings
from plait.managers.protocol import ERROR, PROXY, RETURN, RemoteError
from plait.managers.serializers import listener_client

__all__ = [
    "Token",
    "BaseProxy",
    "AutoProxy",
    "MakeProxyType",
    "RebuildProxy",
    "RemoteError",
    "NotExposedError",
    "RemoteTraceback",
    "ManagerGoneError",
    "batch",
    "public_methods",
    "all_methods",
    "error_reply",
    "convert_to_error",
    "dispatch",
    "BATCH_LIMIT",
    "client_for",
    "forget_client",
]

# Whether connections to a local server ask for its rings (rings.py); off: sockets only.
USE_RINGS = True
BATCH_LIMIT = 1024


class NotExposedError(RemoteError, AttributeError):
    """A call of a method the object's proxy type does not expose (nor the registry).

    A ``RemoteError`` as in the standard library, and an ``AttributeError`` as the
    method's absence is one.
    """

    def __str__(self) -> str:  # one line: the message, not a traceback between rules
        return str(self.args[0]) if self.args else ""


class RemoteTraceback(Exception):
    """The server's traceback of an exception, attached as ``__cause__`` of the raised one."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


class ManagerGoneError(BrokenPipeError, EOFError):
    """The manager's server was shut down or died; its objects are gone.

    Carries ``address``, ``typeid`` and ``method`` of the call that found out. A
    ``BrokenPipeError`` (a ``ConnectionError``) and an ``EOFError``: what the standard
    proxies raise when their server is gone, so handlers written for them catch it.
    """

    def __init__(self, address: Any, typeid: str | None, method: str | None, why: str) -> None:
        what = f"cannot call {method!r} on {typeid!r} object: " if method else ""
        super().__init__(f"{what}the manager at {address!r} {why}")
        self.address = address
        self.typeid = typeid
        self.method = method
        self.why = why

    def __reduce__(self):
        return type(self), (self.address, self.typeid, self.method, self.why)


class Token:
    """What identifies a shared object: its ``typeid``, server ``address`` and ``id``."""

    __slots__ = ("typeid", "address", "id")

    def __init__(self, typeid: str, address: Any, id: int) -> None:  # noqa: A002 - standard name
        self.typeid = typeid
        self.address = address
        self.id = id

    def __getstate__(self):
        return (self.typeid, self.address, self.id)

    def __setstate__(self, state) -> None:
        self.typeid, self.address, self.id = state

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Token) and self.__getstate__() == other.__getstate__()

    def __hash__(self) -> int:
        return hash(self.__getstate__())

    def __repr__(self) -> str:
        return f"Token(typeid={self.typeid!r}, address={self.address!r}, id={self.id!r})"


def all_methods(obj: Any) -> list[str]:
    """The names of the callable attributes of ``obj``."""
    return [name for name in dir(obj) if callable(getattr(obj, name, None))]


def public_methods(obj: Any) -> list[str]:
    """The names of the public callable attributes of ``obj`` (what a proxy exposes)."""
    return [name for name in dir(obj) if name[0] != "_" and callable(getattr(obj, name, None))]


def convert_to_error(kind: Any, result: Any) -> BaseException:
    """The exception a non-``RETURN`` reply stands for (plait's kinds and the standard
    library's ``'#ERROR'``/``'#TRACEBACK'``/``'#UNSERIALIZABLE'``)."""
    if kind == ERROR:
        exc, tb = result
        exc.__cause__ = RemoteTraceback(tb)
        return exc
    if kind == "#ERROR":
        return result
    if kind in ("#TRACEBACK", "#UNSERIALIZABLE"):
        if not isinstance(result, str):
            raise TypeError(f"Result {result!r} (kind {kind!r}) type is {type(result)}, not str")
        if kind == "#UNSERIALIZABLE":
            return RemoteError(f"Unserializable message: {result}\n")
        return RemoteError(result)
    return ValueError(f"Unrecognized message type {kind!r}")


def dispatch(
    c: Any,
    id: Any,  # noqa: A002
    methodname: str,
    args: tuple = (),
    kwds: dict | None = None,
    *,
    timeout: float | None = None,
) -> Any:
    """Send one request on connection ``c`` (from ``listener_client``'s ``Client``) and
    return its result; raise the error it brings. ``id`` None asks the server itself
    (``'number_of_objects'``, ``'debug_info'``, ``'dummy'``, ``'shutdown'``...).

    Blocks for one round trip, up to ``timeout`` seconds (then ``TimeoutError``). The
    connection is a session of its own: objects it creates are held until it closes.
    """
    c.send((id, methodname, tuple(args), dict(kwds or {}), None))
    kind, result = c.recv() if timeout is None else c.recv(timeout=timeout)
    if kind == RETURN:
        return result
    raise convert_to_error(kind, result)


# -- the client side of one server, per process ------------------------------------------


class _Client:
    """This process's connections to one server, its session, its proxy counts."""

    def __init__(self, address: Any, authkey: bytes, serializer: str = "pickle") -> None:
        self.address = address
        self.authkey = authkey
        self.serializer = serializer
        self.session = os.urandom(12)
        self.local = threading.local()
        self.lock = threading.RLock()  # reentrant: a proxy's __del__ may run under it
        self.live: dict[int, int] = {}  # object id -> proxies of it in this process
        self.control: list[tuple[str, int]] = []  # posted increfs/decrefs/pins
        self.anchor = None  # the first connection; kept open, it holds the session
        self.conns: weakref.WeakSet = weakref.WeakSet()  # every thread's, closed at the end
        self.stale = False  # set in a forked child: this process is another session
        self.gone: str | None = None  # why calls fail at once (shut down from here)

    # Reference counting: local counts, messages only at 0 <-> 1, riding on requests.

    def adopt(self, ident: int, counted: bool) -> None:
        with self.lock:
            n = self.live.get(ident, 0)
            if n == 0 and not counted:
                self.control.append(("incref", ident))
            self.live[ident] = n + 1

    def release(self, ident: int) -> None:
        with self.lock:
            n = self.live.get(ident, 0) - 1
            if n > 0:
                self.live[ident] = n
            elif n == 0:
                del self.live[ident]
                self.control.append(("decref", ident))

    def pin(self, ident: int) -> None:
        with self.lock:
            self.control.append(("pin", ident))

    def pin_all(self) -> None:
        with self.lock:
            self.control.extend(("pin", ident) for ident in self.live)

    # Connections.

    def connection(self):
        conn = getattr(self.local, "conn", None)
        if conn is not None:
            return conn
        conn = listener_client[self.serializer][1](self.address, authkey=self.authkey)
        try:
            if isinstance(self.address, str) and USE_RINGS and self.serializer == "pickle":
                # a Unix socket: a local server
                conn.send(("#hello", self.session, "rings", os.getpid()))
                try:
                    answer = conn.recv(timeout=HANDSHAKE_TIMEOUT)
                except EOFError as exc:
                    raise ConnectionResetError(f"{self.address!r} hung up after the hello") from exc
                if answer[0] == "#rings":
                    conn = rings.RingLink(conn, *answer[1:])
            else:
                conn.send(("#hello", self.session))
        except BaseException:
            conn.close()
            raise
        self.local.conn = conn
        with self.lock:
            self.conns.add(conn)
            if self.anchor is None:
                self.anchor = conn
        return conn

    def close(self, why: str) -> None:
        """Close every connection; later calls raise ``ManagerGoneError`` saying ``why``."""
        self.gone = why
        with self.lock:
            conns = list(self.conns)
            self.conns = weakref.WeakSet()
            self.anchor = None
        for conn in conns:
            conn.close()

    def _discard(self, conn) -> None:
        """Drop a connection whose state is unknown (a call was interrupted)."""
        self.local.conn = None
        if conn is not self.anchor:  # the anchor stays open: it holds the session
            conn.close()

    def _take_control(self):
        with self.lock:
            control, self.control = self.control, []
        return control

    def _restore_control(self, control) -> None:
        with self.lock:
            self.control[:0] = control

    def request(self, message_head: tuple, typeid: str | None, method: str | None):
        """Send one request and return its raw reply ``(kind, value)``."""
        if self.gone is not None:
            raise ManagerGoneError(self.address, typeid, method, self.gone)
        conn = getattr(self.local, "conn", None)
        if conn is None:
            try:
                conn = self.connection()
            except (OSError, AuthenticationError) as exc:
                if isinstance(exc, AuthenticationError) and not isinstance(
                    exc.__cause__, OSError | EOFError
                ):
                    raise  # the keys differ; a handshake cut short is a server going away
                raise ManagerGoneError(
                    self.address, typeid, method, f"cannot be reached: {exc}"
                ) from exc
        control = self._take_control() if self.control else None
        _sending.address = self.address
        try:
            conn.send((*message_head, control))
        except BaseException as exc:
            _sending.address = None
            if control:
                self._restore_control(control)
            if isinstance(exc, OSError):
                self._discard(conn)
                raise ManagerGoneError(self.address, typeid, method, "is gone") from exc
            raise
        _sending.address = None
        try:
            return conn.recv()
        except (EOFError, OSError) as exc:
            self._discard(conn)
            raise ManagerGoneError(self.address, typeid, method, "is gone") from exc
        except BaseException:
            self._discard(conn)  # the reply may still come: never read it as the next one
            raise

    def call(self, ident: int | None, method: str, args: tuple, kwds: dict, proxy=None) -> Any:
        if ident is not None and getattr(_batching, "calls", None) is not None:
            return _queue_batched(self, ident, method, args, kwds, proxy)
        typeid = proxy._token.typeid if proxy is not None else None
        kind, value = self.request((ident, method, args, kwds), typeid, method)
        if kind == RETURN:
            return value
        try:
            return self.decode(kind, value, proxy)
        finally:  # no cycle exception -> traceback -> this frame -> exception
            value = None

    def decode(self, kind: int, value: Any, proxy) -> Any:
        if kind == RETURN:
            return value
        if kind == ERROR:
            exc, tb = value
            try:
                raise exc from RemoteTraceback(tb)
            finally:  # no cycle exception -> traceback -> this frame -> exception
                exc = value = None
        if kind == PROXY:
            proxytype, typeid, ident, exposed = value
            token = Token(typeid, self.address, ident)
            manager = proxy._manager if proxy is not None else None
            if proxytype is None:  # it came as XML-RPC: this side's registry names it
                entry = getattr(manager, "_registry", {}).get(typeid)
                proxytype = entry.proxytype if entry is not None else AutoProxy
            p = proxytype(
                token,
                self.serializer,
                manager=manager,
                authkey=self.authkey,
                exposed=exposed,
                incref=False,
            )
            self.adopt(ident, counted=True)
            p._client = self
            return p
        raise RemoteError(f"unexpected reply kind {kind!r} from the manager at {self.address!r}")


_clients: dict[Any, _Client] = {}
# .address: the server a request being pickled goes to. A proxy pickled into a request
# to its own server needs no pin: the server holds it before any later decref arrives.
_sending = threading.local()
_clients_lock = threading.Lock()
# Servers living in this process, by address: proxies rebuilt here call them directly.
_local_servers: dict[Any, Any] = {}


def client_for(address: Any, authkey: bytes | None, serializer: str = "pickle") -> _Client:
    """This process's ``_Client`` of the server at ``address`` (made on first use)."""
    client = _clients.get(address)
    if client is None:
        with _clients_lock:
            client = _clients.get(address)
            if client is None:
                if authkey is None:
                    from plait.process import current_process  # noqa: PLC0415

                    authkey = current_process().authkey
                client = _clients[address] = _Client(address, authkey, serializer)
    return client


def forget_client(address: Any, why: str) -> None:
    """Make every later call to ``address`` from this process raise ``ManagerGoneError``."""
    client = _clients.pop(address, None)
    if client is not None:
        client.close(why)


def _before_fork() -> None:
    for client in list(_clients.values()):
        client.pin_all()


def _after_fork_in_child() -> None:
    global _clients_lock
    _clients_lock = threading.Lock()
    for client in _clients.values():
        client.stale = True
    _clients.clear()
    for server in _local_servers.values():
        server.local_client.stale = True
    _local_servers.clear()


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


# -- batches ------------------------------------------------------------------------------

_batching = threading.local()


class batch:  # noqa: N801 - a context manager used like a function
    """Queue the proxy calls this thread makes in the block; send them all at its end.

    Each call returns a ``concurrent.futures.Future`` at once; the calls go to each
    server in one message (per ``BATCH_LIMIT`` calls) and the futures are resolved when
    the block ends, in order. The calls run on the server in the order made. Leaving
    the block blocks until every reply is in; it raises the first call's exception, if
    any (each future holds its own).

    >>> from plait.managers import SyncManager
    >>> with SyncManager() as m:
    ...     d = m.dict()
    ...     with batch():  # one message to the server for the four calls
    ...         for k in range(3):
    ...             d[k] = k * k
    ...         n = d.get(2)  # a Future
    ...     n.result()
    4
    """

    def __enter__(self) -> batch:
        if getattr(_batching, "calls", None) is not None:
            raise RuntimeError("batch() blocks do not nest")
        _batching.calls = []
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        calls = _batching.calls
        _batching.calls = None
        first = _flush_batch(calls)
        if first is not None and exc_type is None:
            raise first


def _queue_batched(client, ident, method, args, kwds, proxy) -> Future:
    calls = _batching.calls
    future: Future = Future()
    calls.append((client, (ident, method, args, kwds), future, proxy))
    if len(calls) >= BATCH_LIMIT:
        _batching.calls = []
        first = _flush_batch(calls)
        _batching.calls = calls = []
        if first is not None:
            raise first
    return future


def _flush_batch(calls) -> BaseException | None:
    """Send queued calls, one message per client in order of first use; resolve them."""
    by_client: dict[int, tuple[_Client, list]] = {}
    for entry in calls:
        by_client.setdefault(id(entry[0]), (entry[0], []))[1].append(entry)
    first = None
    for client, entries in by_client.values():
        try:
            kind, value = client.request(
                (None, "batch", [e[1] for e in entries], {}), entries[0][3]._token.typeid, "batch"
            )
            replies = client.decode(kind, value, None)
        except BaseException as exc:  # the whole message failed: every call did
            for e in entries:
                e[2].set_exception(exc)
            first = first or exc
            continue
        for (_, _, future, proxy), (rkind, rvalue) in zip(entries, replies, strict=True):
            try:
                future.set_result(client.decode(rkind, rvalue, proxy))
            except Exception as exc:
                future.set_exception(exc)
                first = first or exc
    return first


# -- proxies ------------------------------------------------------------------------------


class BaseProxy:
    """Base class of proxies: ``_callmethod``, ``_getvalue``, pickling, lifetimes.

    Subclasses define methods that call ``self._callmethod(name, args, kwds)``, and
    may set ``_exposed_`` (the methods the server lets them call) and
    ``_method_to_typeid_`` (methods whose result stays on the server and comes back as
    a proxy of that typeid), as with ``multiprocessing.managers.BaseProxy``.
    """

    _exposed_: tuple[str, ...] | None = None
    _method_to_typeid_: dict[str, str] | None = None

    def __init__(
        self,
        token: Token,
        serializer: str = "pickle",
        manager: Any = None,
        authkey: bytes | None = None,
        exposed: Any = None,
        incref: bool = True,
        manager_owned: bool = False,
    ) -> None:
        self._token = token
        self._id = token.id
        self._serializer = serializer
        self._manager = manager
        self._authkey = authkey
        self._owned_by_manager = manager_owned
        self._client = None
        if exposed is not None:
            self._exposed_ = tuple(exposed)
        if incref:
            self._bind()

    def _bind(self):
        """Count this proxy in this process (and in this session, at the next request)."""
        address = self._token.address
        server = _local_servers.get(address)
        if server is not None:
            client = server.local_client
        else:
            client = client_for(address, self._authkey, self._serializer)
        client.adopt(self._id, counted=False)
        self._client = client
        return client

    def _callmethod(self, methodname: str, args: tuple = (), kwds: dict | None = None) -> Any:
        """Call ``methodname(*args, **kwds)`` on the referent; return its result.

        Blocks for one round trip, and as long as the method blocks on the server.
        Raises what the method raised (the server's traceback as ``__cause__``),
        ``AttributeError`` for a method that is not exposed, ``ManagerGoneError`` when
        the server is gone.
        """
        client = self._client
        if client is None or client.stale:
            client = self._bind()
        return client.call(self._id, methodname, args, kwds or {}, self)

    def _getvalue(self) -> Any:
        """A copy of the referent (blocks for one round trip)."""
        return self._callmethod("#getvalue")

    def __reduce__(self):
        client = self._client
        if (
            client is not None
            and not client.stale
            and getattr(_sending, "address", None) != self._token.address
        ):
            client.pin(self._id)
        kwds: dict[str, Any] = {}
        if _spawning():
            kwds["authkey"] = self._authkey or (client.authkey if client else None)
        if getattr(self, "_isauto", False):
            kwds["exposed"] = self._exposed_
            return RebuildProxy, (AutoProxy, self._token, self._serializer, kwds)
        return RebuildProxy, (type(self), self._token, self._serializer, kwds)

    def __deepcopy__(self, memo):
        return self._getvalue()

    def __del__(self) -> None:
        client = self.__dict__.get("_client")
        if client is not None and not client.stale:
            try:
                client.release(self._id)
            except Exception:  # interpreter shutdown: nothing to tell any more
                pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} object, typeid {self._token.typeid!r} " f"at {id(self):#x}>"

    def __str__(self) -> str:
        try:
            return self._callmethod("__repr__")
        except Exception:
            return repr(self)[:-1] + "; '__str__()' failed>"


def _spawning() -> bool:
    """Whether the pickle being made goes to a child being started (fds collected)."""
    from plait._core import fdpass  # noqa: PLC0415 - already imported by plait.ipc

    return getattr(fdpass._state, "collector", None) is not None


def RebuildProxy(func, token: Token, serializer: str, kwds: dict):  # noqa: N802 - standard name
    """Rebuild a pickled proxy (``func`` is its class, or ``AutoProxy``)."""
    server = _local_servers.get(token.address)
    if server is not None:
        kwds["manager_owned"] = True
    return func(token, serializer, **kwds)


_proxy_types: dict[tuple[str, tuple[str, ...]], type] = {}


def MakeProxyType(name: str, exposed, _cache=_proxy_types) -> type:  # noqa: N802
    """A ``BaseProxy`` subclass with one method per name in ``exposed`` (cached)."""
    exposed = tuple(exposed)
    try:
        return _cache[(name, exposed)]
    except KeyError:
        pass
    namespace: dict[str, Any] = {"_exposed_": exposed}
    for meth in exposed:
        namespace[meth] = _forwarder(meth)
    proxytype = type(name, (BaseProxy,), namespace)
    _cache[(name, exposed)] = proxytype
    return proxytype


def _forwarder(meth: str):
    def method(self, *args, **kwds):
        return self._callmethod(meth, args, kwds)

    method.__name__ = meth
    return method


def AutoProxy(  # noqa: N802 - the standard library's name
    token: Token,
    serializer: str = "pickle",
    manager: Any = None,
    authkey: bytes | None = None,
    exposed: Any = None,
    incref: bool = True,
    manager_owned: bool = False,
) -> BaseProxy:
    """A proxy whose methods are the referent's exposed ones (asked of the server if unknown)."""
    if exposed is None:
        client = client_for(token.address, authkey, serializer)
        exposed = client.call(None, "get_methods", (token.id,), {})
    proxytype = MakeProxyType(f"AutoProxy[{token.typeid}]", exposed)
    proxy = proxytype(
        token,
        serializer,
        manager=manager,
        authkey=authkey,
        incref=incref,
        manager_owned=manager_owned,
    )
    proxy._isauto = True
    return proxy


def format_remote_traceback(exc: BaseException) -> str:
    """The traceback text the server sends beside an exception."""
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return "\n" + "".join(lines)


def error_reply(exc: BaseException) -> tuple:
    """The reply ``(ERROR, (exc, traceback text))`` to a request that raised ``exc``.

    The tracebacks of ``exc`` and of the exceptions it chains are dropped once written
    out: they hold the server's frames, and with them the object called (a frame is
    easily part of a cycle that only the garbage collector would break), so a managed
    object whose method raised would outlive its last proxy.
    """
    tb = format_remote_traceback(exc)
    seen = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        link.__traceback__ = None
        link = link.__cause__ or link.__context__
    return ERROR, (exc, tb)
