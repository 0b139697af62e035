"""The manager's server: shared objects, and a thread per client connection serving them.

Theory of operation
-------------------
A ``Server`` listens (``plait.ipc.Listener``: a Unix socket, or TCP for clients on other
machines) and gives every accepted connection its own thread. That thread first runs the
HMAC handshake of ``plait.ipc.auth`` (both ways, under a deadline, before a byte is
unpickled; a wrong key or garbage only ends that thread), then reads the client's
*hello* (its session id) and then serves requests, one reply each, until the client
goes. A thread per connection is what the shared objects need: a client blocked in
``Lock.acquire`` or ``Queue.get`` blocks its own thread and nobody else, and an
``RLock`` or ``Condition`` is owned by the thread of the client that took it, exactly
as in one process. The accept loop never waits for a client's handshake, so a silent
or slow client cannot delay others.

The table
---------
``objects`` maps an id (a counter, never reused, so a stale proxy can never reach
another object) to ``(object, exposed, method_to_typeid, typeid)``; ``refs`` counts
its holders: sessions that hold it (``held``: the client process has live proxies of
it), sessions that pinned it (pickled a proxy of it), and proxies living in the server
(a managed list stored in a managed dict). The hot path reads ``objects`` without the
lock (a dict lookup is atomic under the GIL); every change of the table and the counts
takes ``lock``. An object whose count reaches zero is removed, and dropped outside the
lock (its ``__del__`` may do anything). When the last connection of a session closes,
for any reason (shutdown, exit, SIGKILL mid-call), the session's holds and pins go:
objects a dead client created are released.

Failure handling, per connection: a frame too large (``max_message_size``) or broken
ends that connection; a message that does not unpickle or does not have the shape of a
request gets an error reply and the connection goes on; a result that cannot be pickled
gets an error reply naming the method. None of this touches other connections.

Stopping: a ``shutdown`` request (or ``stop()``, or the death of the parent process when
the server runs in a manager's child) wakes the accept loop through a pipe; the loop
closes the listener, shuts down every client socket (their threads see EOF and end),
waits briefly for them, and drops every object.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
from typing import Any

from plait._core.errors import AuthenticationError
from plait._core.framing import MAX_MESSAGE_SIZE
from plait.ipc import auth
from plait.ipc.connection import wait
from plait.ipc.listener import HANDSHAKE_TIMEOUT, Listener
from plait.managers import proxy as _proxy
from plait.managers.proxy import (
    ERROR,
    PROXY,
    RETURN,
    RemoteError,
    format_remote_traceback,
    public_methods,
)

__all__ = ["Server"]

_VIEWS = (type({}.keys()), type({}.values()), type({}.items()))
_JOIN_TIMEOUT = 2.0


class _Session:
    """One client process: how many connections it has open, what it holds and pinned."""

    __slots__ = ("conns", "held", "pins")

    def __init__(self) -> None:
        self.conns = 0
        self.held: set[int] = set()
        self.pins: set[int] = set()


class _LocalClient(_proxy._Client):
    """How proxies rebuilt inside the server reach it: direct calls, server-held counts."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.address = server.address
        self.authkey = server.authkey
        self.stale = False
        self.gone = None

    def adopt(self, ident: int, counted: bool) -> None:
        if not counted:
            self.server.hold(ident)

    def release(self, ident: int) -> None:
        self.server.unhold(ident)

    def pin(self, ident: int) -> None:
        # Pickled in the server: it goes in a reply, so the client's session holds it.
        session = getattr(self.server.current, "session", None)
        if session is not None:
            self.server.add_ref(session.held, ident)

    def call(self, ident, method, args, kwds, proxy=None):
        kind, value = self.server.call(ident, method, args, kwds, None)
        return self.decode(kind, value, proxy)


class Server:
    """Serves the objects of ``registry`` at ``address`` to clients holding ``authkey``.

    ``registry`` maps a typeid to ``(callable, exposed, method_to_typeid, proxytype)``.
    Raises ``OSError`` naming the address when it cannot listen there.
    """

    def __init__(
        self,
        registry: dict[str, tuple],
        address: Any,
        authkey: bytes,
        serializer: str = "pickle",
        *,
        max_message_size: int = MAX_MESSAGE_SIZE,
        watch_parent: bool = False,
    ) -> None:
        if not isinstance(authkey, bytes):
            raise TypeError("authkey should be a byte string")
        self.registry = registry
        self.authkey = authkey
        self.serializer = serializer
        self.listener = Listener(address, backlog=128, max_message_size=max_message_size)
        self.address = self.listener.address
        self.objects: dict[int, tuple] = {}
        self.refs: dict[int, int] = {}
        self.sessions: dict[bytes, _Session] = {}
        self.lock = threading.Lock()
        self.current = threading.local()  # .session of the connection a thread serves
        self._ids = itertools.count(1)
        self._conns: set[Any] = set()
        self._threads: set[threading.Thread] = set()
        self._watch_parent = watch_parent
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe()
        self.local_client = _LocalClient(self)
        _proxy._local_servers[self.address] = self

    # -- the accept loop -----------------------------------------------------------------

    def serve_forever(self) -> None:
        """Serve clients until ``stop()``, a ``shutdown`` request or Ctrl-C; then clean up.

        Blocks the calling thread for the server's whole life.
        """
        sources = [self.listener.fileno(), self._wake_r]
        if self._watch_parent:
            from plait.process import parent_process  # noqa: PLC0415

            parent = parent_process()
            if parent is not None:
                sources.append(parent.sentinel)
        try:
            while not self._stopping:
                ready = wait(sources)
                if self.listener.fileno() not in ready:
                    break  # woken up, or the parent is gone
                try:
                    conn = self.listener.accept(timeout=0)
                except (TimeoutError, OSError):
                    continue  # the client gave up before we took it; or out of fds
                peer = self.listener.last_accepted
                thread = threading.Thread(
                    target=self._serve_client,
                    args=(conn, peer),
                    name=f"plait-manager-client {peer!r}",
                    daemon=True,
                )
                with self.lock:
                    self._conns.add(conn)
                    self._threads.add(thread)
                thread.start()
        except KeyboardInterrupt:
            pass
        finally:
            self._close()

    def stop(self) -> None:
        """Make ``serve_forever`` return (never blocks; idempotent)."""
        self._stopping = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _close(self) -> None:
        self.listener.close()
        with self.lock:
            conns = list(self._conns)
            threads = list(self._threads)
        for conn in conns:
            _shutdown_socket(conn)
        for thread in threads:
            thread.join(_JOIN_TIMEOUT)
        with self.lock:
            objects = list(self.objects.values())
            self.objects.clear()
            self.refs.clear()
        del objects  # referents die here, outside the lock
        if _proxy._local_servers.get(self.address) is self:
            del _proxy._local_servers[self.address]
        os.close(self._wake_r)
        os.close(self._wake_w)

    # -- one client ----------------------------------------------------------------------

    def _serve_client(self, conn, peer: Any) -> None:
        session = None
        sid = None
        try:
            try:
                auth.serve_handshake(
                    conn, self.authkey, HANDSHAKE_TIMEOUT, f"client {peer!r} of {self.address!r}"
                )
                hello = conn.recv(timeout=HANDSHAKE_TIMEOUT)
            except (AuthenticationError, EOFError, OSError, ValueError, TimeoutError):
                return
            except Exception:  # a hello that does not unpickle
                return
            if not (isinstance(hello, tuple) and len(hello) == 2 and hello[0] == "#hello"):
                return
            sid = hello[1]
            if not isinstance(sid, bytes):
                return
            session = self._join(sid)
            self.current.session = session
            self._serve(conn, session)
        finally:
            conn.close()
            with self.lock:
                self._conns.discard(conn)
                self._threads.discard(threading.current_thread())
            if session is not None:
                self._leave(sid, session)

    def _serve(self, conn, session: _Session) -> None:
        # Locals for the loop: it runs once per call of every client.
        recv = conn.recv
        send = conn.send
        call = self.call
        while True:
            try:
                request = recv()
            except Exception as exc:
                if isinstance(exc, EOFError | OSError) or conn.closed:
                    return  # gone, or a frame we could not take (the connection is closed)
                reply = (ERROR, (RemoteError(f"cannot unpickle the request: {exc!r}"), ""))
            else:
                try:
                    ident, method, args, kwds, control = request
                except (TypeError, ValueError):
                    reply = (ERROR, (RemoteError("malformed request"), ""))
                else:
                    if control:
                        self._control(session, control)
                    if ident is None:
                        reply = self._special(method, args, session)
                    else:
                        reply = call(ident, method, args, kwds, session)
            try:
                send(reply)
            except OSError:
                return
            except Exception as exc:  # the result does not pickle, or is too large
                try:
                    send((ERROR, (RemoteError(f"cannot send the reply: {exc!r}"), "")))
                except OSError:
                    return
            if reply[0] == RETURN and method == "shutdown" and ident is None:
                self.stop()

    def call(self, ident: int, method: str, args: tuple, kwds: dict, session) -> tuple:
        """Run one method call on object ``ident``; return the reply."""
        try:
            obj, exposed, to_typeid, typeid = self.objects[ident]
        except (KeyError, TypeError):
            return ERROR, (
                ReferenceError(
                    f"the manager at {self.address!r} holds no object with id {ident!r}"
                ),
                "",
            )
        try:
            if method not in exposed:
                if method == "#getvalue":
                    return RETURN, obj
                if method == "__repr__" or method == "__str__":
                    return RETURN, getattr(obj, method)()
                raise AttributeError(
                    f"method {method!r} of {typeid!r} object is not exposed "
                    f"(exposed: {', '.join(sorted(exposed))})"
                )
            result = getattr(obj, method)(*args, **kwds)
        except Exception as exc:
            return ERROR, (exc, format_remote_traceback(exc))
        if to_typeid is not None and method in to_typeid:
            return self._proxy_reply(result, to_typeid[method], session)
        if type(result) in _VIEWS:
            result = list(result)  # as the standard library: dict views come back as lists
        return RETURN, result

    def _special(self, method: str, args: Any, session: _Session) -> tuple:
        try:
            if method == "batch":
                call = self.call
                return RETURN, [call(i, m, a, k, session) for i, m, a, k in args]
            if method == "create":
                typeid, cargs, ckwds = args
                return RETURN, self.create(session, typeid, *cargs, **ckwds)
            if method == "get_methods":
                return RETURN, sorted(self.objects[args[0]][1])
            if method == "dummy" or method == "shutdown":
                return RETURN, None
            if method == "number_of_objects":
                return RETURN, len(self.objects)
            raise RemoteError(f"unknown request {method!r} to the manager at {self.address!r}")
        except Exception as exc:
            return ERROR, (exc, format_remote_traceback(exc))

    # -- objects and references ----------------------------------------------------------

    def create(self, session: _Session | None, typeid: str, *args, **kwds) -> tuple:
        """Make a new object of ``typeid``; ``session`` holds it. Returns ``(id, exposed)``.

        Raises ``KeyError`` naming an unknown typeid, ``TypeError`` for a typeid that
        has no callable here, and whatever the callable raised.
        """
        try:
            make = self.registry[typeid][0]
        except (KeyError, TypeError):
            raise KeyError(f"typeid {typeid!r} is not registered with this manager") from None
        if make is None:
            raise TypeError(f"typeid {typeid!r} has no callable in this manager's server")
        obj = make(*args, **kwds)
        ident, exposed, _ = self._register(obj, typeid, session)
        return ident, exposed

    def _register(self, obj: Any, typeid: str, session: _Session | None):
        try:
            _, exposed, to_typeid, proxytype = self.registry[typeid]
        except KeyError:
            raise KeyError(f"typeid {typeid!r} is not registered with this manager") from None
        if exposed is None:
            exposed = getattr(obj, "_exposed_", None) or public_methods(obj)
        exposed = tuple(exposed)
        ident = next(self._ids)
        with self.lock:
            self.objects[ident] = (obj, frozenset(exposed), to_typeid or None, typeid)
            # One holder: the session, or (a call from inside the server) the new proxy.
            self.refs[ident] = 1
            if session is not None:
                session.held.add(ident)
        return ident, exposed, proxytype

    def _proxy_reply(self, result: Any, typeid: str, session: _Session | None) -> tuple:
        try:
            ident, exposed, proxytype = self._register(result, typeid, session)
        except Exception as exc:
            return ERROR, (exc, format_remote_traceback(exc))
        return PROXY, (proxytype, typeid, ident, exposed)

    def add_ref(self, holds: set[int], ident: int) -> None:
        """Count ``ident`` as held by ``holds`` (a session's held or pins), once."""
        with self.lock:
            if ident in self.refs and ident not in holds:
                holds.add(ident)
                self.refs[ident] += 1

    def hold(self, ident: int) -> None:
        """One more holder inside the server (a proxy rebuilt here)."""
        with self.lock:
            if ident in self.refs:
                self.refs[ident] += 1

    def unhold(self, ident: int) -> None:
        """One holder inside the server less."""
        with self.lock:
            freed = self._decref(ident)
        del freed

    def _decref(self, ident: int):
        """Count one holder of ``ident`` out (lock held); return what it freed, if anything."""
        n = self.refs.get(ident)
        if n is None:
            return None
        if n > 1:
            self.refs[ident] = n - 1
            return None
        del self.refs[ident]
        return self.objects.pop(ident, None)

    def _control(self, session: _Session, control: Any) -> None:
        freed = []
        try:
            with self.lock:
                for op, ident in control:
                    if op == "decref":
                        if ident in session.held:
                            session.held.discard(ident)
                            freed.append(self._decref(ident))
                        continue
                    holds = session.held if op == "incref" else session.pins
                    if ident in self.refs and ident not in holds:
                        holds.add(ident)
                        self.refs[ident] += 1
        except (TypeError, ValueError):
            pass  # a malformed control list: ignore the rest of it
        del freed

    def _join(self, sid: bytes) -> _Session:
        with self.lock:
            session = self.sessions.get(sid)
            if session is None:
                session = self.sessions[sid] = _Session()
            session.conns += 1
        return session

    def _leave(self, sid: bytes, session: _Session) -> None:
        freed = []
        with self.lock:
            session.conns -= 1
            if session.conns > 0:
                return
            self.sessions.pop(sid, None)
            for ident in itertools.chain(session.held, session.pins):
                freed.append(self._decref(ident))
            session.held.clear()
            session.pins.clear()
        del freed


def _shutdown_socket(conn) -> None:
    """Wake a thread blocked reading ``conn``: it sees end of file."""
    try:
        sock = socket.socket(fileno=conn.fileno())
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.detach()
