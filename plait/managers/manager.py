"""``BaseManager``: start a server process (or connect to one) and create shared objects.

Theory of operation
-------------------
A manager class carries a registry, filled by the class method ``register``: for each
typeid the callable that makes the object in the server, the proxy type clients get, the
methods exposed, and which methods return other shared objects (``method_to_typeid``).
Subclasses copy the registry on their first ``register``, so registering on a subclass
never changes its parent.

``start()`` runs a ``Server`` in a child process (the manager's ``ctx``, so fork, spawn
and forkserver all work), which sends back the address it listens on (the real port of
a TCP ``('host', 0)``), or the exception that stopped it. The server child ignores
SIGINT (Ctrl-C in a terminal reaches the whole process group; the manager must outlive
the parent's ``KeyboardInterrupt`` handling) and stops by itself if the parent dies.
``connect()`` reaches a server started elsewhere, on this machine or another: the same
``Client`` path, the same handshake. ``get_server()`` gives a ``Server`` to run in the
calling process (``serve_forever()``).

Shutdown: ``shutdown()`` (or leaving the ``with`` block, or garbage collection of the
manager, or interpreter exit) sends the server a ``shutdown`` request on a fresh
connection, joins the child (terminating it if it does not stop in time), and marks this
process's connections to it gone: every proxy's next call raises ``ManagerGoneError``
naming the address, without touching the network.

Keys: every connection authenticates with the manager's ``authkey`` (by default the
calling process's ``authkey``, which children inherit). A manager on a TCP address
must be given an explicit non-empty key: a TCP port is reachable by other users and
other machines, and the default key would be a secret nobody chose.
"""

from __future__ import annotations

import atexit
import os
import signal
import weakref
from dataclasses import dataclass
from typing import Any, TypeVar

from plait._core.errors import ProcessError
from plait.ipc.connection import Pipe
from plait.ipc.listener import address_type
from plait.managers.proxy import AutoProxy, Token, client_for, forget_client
from plait.managers.serializers import check_serializer, listener_client
from plait.managers.server import Server
from plait.managers.table import Registration

_Manager = TypeVar("_Manager", bound="BaseManager")  # __enter__ returns the subclass

__all__ = ["BaseManager", "State"]

START_TIMEOUT = 60.0  # a spawned server imports plait and the registry's modules
SHUTDOWN_TIMEOUT = 2.0


class State:
    """The states of a manager, as ``multiprocessing.managers.State``; after shutdown,
    ``ended`` holds what is known of the server process."""

    INITIAL = 0
    STARTED = 1
    SHUTDOWN = 2

    def __init__(self) -> None:
        self.value = State.INITIAL
        self.ended: EndedProcess | None = None


@dataclass(frozen=True, slots=True)
class EndedProcess:
    """The server process after shutdown: its name, pid and exit code, kept when the
    process handle is closed (its pidfd goes at shutdown, not when the manager is
    collected). ``join`` returns at once, ``is_alive`` is False."""

    name: str
    pid: int
    exitcode: int | None

    def join(self, timeout: float | None = None) -> None:
        return None

    def is_alive(self) -> bool:
        return False


class BaseManager:
    """Starts, or connects to, a server of shared objects; creates them by typeid.

    ``BaseManager(address=None, authkey=None, serializer='pickle', ctx=None)``: the
    address to serve on or connect to (a Unix path, None for a fresh private one, or a
    ``(host, port)`` tuple), the key (bytes), the serializer (``'pickle'`` or
    ``'xmlrpclib'``: see ``serializers``), the start context of the server process.
    Raises ``TypeError`` for a key that is not bytes, ``ValueError`` for an unknown
    serializer or a TCP address without a key.

    >>> class Counter:
    ...     def __init__(self):
    ...         self.total = 0
    ...     def add(self, n):
    ...         self.total += n
    ...         return self.total
    >>> class MyManager(BaseManager): pass
    >>> MyManager.register("Counter", Counter)
    >>> with MyManager() as m:
    ...     c = m.Counter()  # the counter lives in the server; c is its proxy
    ...     c.add(2)
    ...     c.add(3)
    2
    5
    """

    _registry: dict[str, Registration] = {}
    _Server = Server

    def __init__(
        self,
        address: Any = None,
        authkey: bytes | None = None,
        serializer: str = "pickle",
        ctx: Any = None,
        *,
        shutdown_timeout: float = SHUTDOWN_TIMEOUT,
    ) -> None:
        check_serializer(serializer)
        if authkey is None:
            from plait.process import current_process  # noqa: PLC0415

            if address is not None and address_type(address) != "AF_UNIX":
                raise ValueError(
                    f"a manager on the TCP address {address!r} needs an explicit authkey"
                )
            authkey = current_process().authkey
        elif not isinstance(authkey, bytes | bytearray):
            raise TypeError(f"authkey should be a byte string, not {type(authkey).__name__}")
        elif not authkey and address is not None and address_type(address) != "AF_UNIX":
            raise ValueError(f"a manager on the TCP address {address!r} needs a non-empty authkey")
        if ctx is None:
            from plait.process import get_context  # noqa: PLC0415

            ctx = get_context()
        self._address = address
        self._authkey = bytes(authkey)
        self._serializer = serializer
        self._Listener, self._Client = listener_client[serializer]
        self._ctx = ctx
        self._state = State()
        self._server_process = None
        self._finalizer = None
        self._shutdown_timeout = shutdown_timeout

    @property
    def _process(self) -> Any:
        """The server process (as ``multiprocessing``'s manager names it); once shut
        down, an ``EndedProcess`` with its pid and exit code."""
        return self._state.ended or self._server_process

    @property
    def address(self) -> Any:
        """The server's address (known after ``start()``: the real port of port 0)."""
        return self._address

    # -- registry ------------------------------------------------------------------------

    @classmethod
    def register(
        cls,
        typeid: str,
        callable: Any = None,  # noqa: A002 - the standard library's parameter name
        proxytype: Any = None,
        exposed: Any = None,
        method_to_typeid: dict[str, str] | None = None,
        create_method: bool = True,
    ) -> None:
        """Register a type (or any callable) of shared object under ``typeid``.

        With ``create_method`` the class gets a method ``typeid(*args, **kwds)`` that
        makes the object in the server and returns a proxy (``proxytype``, by default an
        ``AutoProxy`` of the ``exposed`` methods, by default the public ones). A typeid
        registered again replaces the earlier registration, as in the standard library.
        Raises ``TypeError`` for a typeid that is not a string.
        """
        if not isinstance(typeid, str):
            raise TypeError(f"typeid must be a str, not {type(typeid).__name__}")
        if "_registry" not in cls.__dict__:
            cls._registry = dict(cls._registry)
        if proxytype is None:
            proxytype = AutoProxy
        exposed = exposed or getattr(proxytype, "_exposed_", None)
        method_to_typeid = method_to_typeid or getattr(proxytype, "_method_to_typeid_", None)
        if method_to_typeid:
            for key, value in method_to_typeid.items():
                if not isinstance(key, str) or not isinstance(value, str):
                    raise TypeError(f"method_to_typeid of {typeid!r} must map str to str")
        cls._registry[typeid] = Registration(
            callable,
            tuple(exposed) if exposed is not None else None,
            dict(method_to_typeid) if method_to_typeid else None,
            proxytype,
        )
        if create_method:

            def create(self, *args, **kwds):
                ident, exposed = self._create(typeid, *args, **kwds)
                token = Token(typeid, self._address, ident)
                proxy = proxytype(
                    token,
                    self._serializer,
                    manager=self,
                    authkey=self._authkey,
                    exposed=exposed,
                    incref=False,
                )
                client = client_for(self._address, self._authkey, self._serializer)
                client.adopt(ident, counted=True)
                proxy._client = client
                return proxy

            create.__name__ = typeid
            create.__qualname__ = f"{cls.__name__}.{typeid}"
            setattr(cls, typeid, create)

    def _create(self, typeid: str, *args, **kwds) -> tuple[int, tuple[str, ...]]:
        """Make an object of ``typeid`` in the server; return its id and exposed methods."""
        self._check_started(typeid)
        client = client_for(self._address, self._authkey, self._serializer)
        return client.call(None, "create", (typeid, args, kwds), {})

    def _check_started(self, what: str) -> None:
        if self._state.value == State.INITIAL:
            raise ProcessError(f"the manager is not started or connected: cannot create {what!r}")
        if self._state.value == State.SHUTDOWN:
            raise ProcessError(
                f"the manager at {self._address!r} is shut down: cannot create {what!r}"
            )

    # -- server --------------------------------------------------------------------------

    def get_server(self) -> Server:
        """A ``Server`` for this manager's registry, to run here with ``serve_forever()``.

        Raises ``OSError`` naming the address when it cannot listen there.
        """
        if self._state.value != State.INITIAL:
            raise ProcessError("the manager already started or connected")
        return self._Server(self._registry, self._address, self._authkey, self._serializer)

    def start(self, initializer: Any = None, initargs: tuple = ()) -> None:
        """Start the server in a child process; ``initializer(*initargs)`` runs there first.

        Blocks until the server listens (up to ``START_TIMEOUT`` seconds). Raises
        ``ProcessError`` if already started or if the child fails to start, ``OSError``
        naming the address when the server cannot listen there, ``TypeError`` for an
        initializer that is not callable.
        """
        if self._state.value != State.INITIAL:
            raise ProcessError(
                "the manager already started"
                if self._state.value == State.STARTED
                else "the manager has shut down"
            )
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        reader, writer = Pipe(duplex=False)
        process = self._ctx.Process(
            target=type(self)._run_server,
            args=(
                self._registry,
                self._address,
                self._authkey,
                self._serializer,
                writer,
                initializer,
                initargs,
            ),
            name=f"{type(self).__name__}-server",
        )
        try:
            process.start()
            writer.close()
            try:
                status, value = reader.recv(timeout=START_TIMEOUT)
            except (EOFError, TimeoutError) as exc:
                process.kill()
                process.join(SHUTDOWN_TIMEOUT)
                raise ProcessError(
                    f"the manager's server process failed to start "
                    f"(exit code {process.exitcode})"
                ) from exc
        finally:
            writer.close()
            reader.close()
        if status == "error":
            process.join(SHUTDOWN_TIMEOUT)
            raise value
        self._address = value
        self._server_process = process
        client_for(value, self._authkey, self._serializer)
        self._state.value = State.STARTED
        self._finalizer = weakref.finalize(
            self,
            _stop_server,
            process,
            value,
            self._authkey,
            self._serializer,
            self._state,
            self._shutdown_timeout,
            os.getpid(),
        )
        self._finalizer.atexit = False
        atexit.register(self._finalizer)  # before plait.process joins its children

    @classmethod
    def _run_server(cls, registry, address, authkey, serializer, writer, initializer, initargs):
        """The server child's body: listen, report the address, serve until shutdown."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if initializer is not None:
                initializer(*initargs)
            server = cls._Server(registry, address, authkey, serializer, watch_parent=True)
        except Exception as exc:
            writer.send(("error", exc))
            writer.close()
            return
        writer.send(("address", server.address))
        writer.close()
        server.serve_forever()

    def connect(self) -> None:
        """Connect to a server that runs elsewhere (``start``, ``serve_forever``).

        Blocks for one connection and handshake. Raises ``ConnectionRefusedError`` or
        ``FileNotFoundError`` naming the address when nothing serves there,
        ``AuthenticationError`` when the keys differ, ``ProcessError`` if already started.
        """
        if self._state.value != State.INITIAL:
            raise ProcessError("the manager already started or connected")
        if self._address is None:
            raise ValueError("connect() needs the address of a running manager")
        conn = self._Client(self._address, authkey=self._authkey)
        conn.close()
        client = client_for(self._address, self._authkey, self._serializer)
        if client.authkey != self._authkey or client.serializer != self._serializer:
            forget_client(self._address, "was reached with another key or serializer")
            client = client_for(self._address, self._authkey, self._serializer)
        self._state.value = State.STARTED

    def shutdown(self) -> None:
        """Stop the server this manager started (idempotent); blocks up to a few seconds.

        Proxies of its objects raise ``ManagerGoneError`` on their next use. For a
        manager that only connected, this forgets the connection (the server runs on).
        """
        if self._finalizer is not None:
            self._finalizer()
            atexit.unregister(self._finalizer)
        elif self._state.value == State.STARTED:
            forget_client(self._address, "was shut down by this process")
            self._state.value = State.SHUTDOWN

    def join(self, timeout: float | None = None) -> None:
        """Wait for the server process to end (``timeout`` seconds; None: forever).

        Once it has ended, the manager forgets it (``_process`` is None), as the
        standard library's does."""
        process = self._process
        if process is not None:
            process.join(timeout)
            if not process.is_alive():
                self._server_process = self._state.ended = None

    def _ask(self, request: str) -> Any:
        client = client_for(self._address, self._authkey, self._serializer)
        return client.call(None, request, (), {})

    def _number_of_objects(self) -> int:
        """How many shared objects the server holds now (one round trip)."""
        return self._ask("number_of_objects")

    def _debug_info(self) -> str:
        """The objects the server holds, one line each (one round trip)."""
        return self._ask("debug_info")

    def statistics(self) -> dict[str, int]:
        """The server's ``statistics()`` (one round trip): objects, sessions, connections
        served by its loop, threads. Raises ``ManagerGoneError`` if the server is gone."""
        return self._ask("statistics")

    def __enter__(self: _Manager) -> _Manager:
        if self._state.value == State.INITIAL:
            self.start()
        if self._state.value != State.STARTED:
            raise ProcessError(f"the manager at {self._address!r} is shut down")
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def __reduce__(self):
        raise TypeError("a manager cannot be pickled; pass its proxies (or its address)")


def _stop_server(
    process, address, authkey: bytes, serializer: str, state: State, timeout: float, pid: int
) -> None:
    """Ask the server to stop, join its process (terminate, then kill, if it lingers).

    Only in the process that started it (``pid``): a forked child's copy of the manager,
    shut down or collected there, leaves it running, as the standard one does."""
    if state.value == State.SHUTDOWN or os.getpid() != pid:
        return
    state.value = State.SHUTDOWN
    if process.is_alive():
        try:
            conn = listener_client[serializer][1](address, authkey=authkey, timeout=timeout)
            try:
                conn.send(("#hello", b"shutdown"))
                conn.send((None, "shutdown", (), {}, None))
                conn.recv(timeout=timeout)
            finally:
                conn.close()
        except Exception:
            pass  # already gone, or wedged: terminate below
        process.join(timeout)
        if process.is_alive():
            process.terminate()
            process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join(timeout)
    process.join(0)
    if process.exitcode is not None:
        state.ended = EndedProcess(process.name, process.pid, process.exitcode)
        process.close()  # its sentinel fd goes now, not when the manager is collected
    forget_client(address, "was shut down")
