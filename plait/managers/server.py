"""The manager's server: shared objects, served by one loop and by threads where needed.

Three rooms: the objects and who holds them (``table.py``), which requests the loop may
answer itself (``policy.py``), and this one, the loop, its threads and the ring thread.

Theory of operation
-------------------
A ``Server`` listens (``plait.ipc.Listener``: a Unix socket, or TCP for clients on other
machines). Its loop (``serve_forever``) polls the listener, a wake-up pipe, the parent's
sentinel (when it runs in a manager's child) and the connections it serves itself.

A new connection first gets a thread of its own, which runs the HMAC handshake of
``plait.ipc.auth`` (both ways, under a deadline, before a byte is unpickled; a wrong key
or garbage ends only that thread) and reads the client's *hello* (its session id). The
loop never waits for a handshake, so a silent or slow client cannot delay others. A
connection whose first message is a request instead (``dispatch()`` on a bare
``Client``, as programs written for the standard library do) is a session of its own,
served by that thread until it closes.

Messages are pickles, or XML-RPC documents for a server made with
``serializer='xmlrpclib'`` (``serializers``: the listener's connections translate; the
server's code sees the same tuples either way).

Then the connection is served in one of two ways:

- *by the loop*, for a local (Unix socket) client, as long as its requests cannot
  block (the ``policy`` verdict ``INLINE``): calls on objects whose methods all
  return at once (``dict``, ``list``, ``array``, ``Namespace``, ``Value``), creating
  them and the standard queues, events and locks, batches of such calls, the server's
  own queries. Creating anything else (a user's type, a ``Pool``) runs in a thread
  once, which then gives the connection back, so the client's later calls are the
  loop's again. One thread serving every ready connection per ``poll`` costs no thread
  switch per request and no GIL hand-off between server threads, but it also runs
  every client's system calls one after the other, where threads overlap them outside
  the GIL; against a thread per connection it is about even. It is kept because the
  loop also watches thread-served connections (below) and needs no thread for an idle
  client.
- *by a thread of its own*, from the first request that may block (``Lock.acquire``,
  ``Queue.get``, a user's type: anything not known to return at once) until the client
  goes; and from the start for TCP clients, whose stream could stop in the middle of
  a frame and so stall the loop. A client blocked in ``acquire`` or ``get`` then blocks
  only its thread, and an ``RLock`` or ``Condition`` is owned by the thread of the
  client that took it, exactly as in one process.

Either way a connection gets exactly one reply per request, in order. Queues and events
are in between: the loop answers a call that can be answered at once (``put`` on an
unbounded queue, ``get`` when an item is there, ``wait`` on a set event), and only a call
that must wait goes to a thread, which gives the connection back to the loop after its
reply; a connection whose calls keep waiting (a consumer of a contended queue) keeps
its thread.

While a thread serves a connection (a local one it took from the loop, or a TCP one
from the start), the loop still watches its socket for hang-up (``POLLRDHUP``): a client
killed in the middle of a call that will never return (a ``wait`` on an event nobody
sets) has its objects released at once; the thread itself ends when its call does.

Local clients and their rings
-----------------------------
A local client asks for rings in its hello (``rings.py``): from then on its requests go
into the server's shared inbox ring and its replies come back in its own outbox ring,
and a thread of their own, the *ring thread* (``_serve_rings``), answers them. It
answers what the loop would answer inline (``_run_now``, shared by both) and redirects
the rest to the socket, where the loop and its threads serve it as described above. The
socket path stays for TCP clients, for large messages and for calls that may block.

Where the time goes
-------------------
With more client processes than cores, throughput follows CPU per call, and on the
socket path most of that CPU is system calls (``poll``, ``recv``, ``send``): a socket
cannot go below one ``send`` and one ``recv`` per side. The rings need none while both
sides are awake (``benchmarks/bench_managers.py`` has the figures, and what the rings
were measured to save). Waiting sides yield their CPU instead of spinning in place
(``rings.YIELDS``): with more clients than cores a spinning client holds the very CPU
another client or the server needs.

The socket path still spins the adaptive way of ``plait._core.framing`` ("Waiting"): the
clients' receive, and the loop (``_ready``: ``poll(0)`` before a blocking ``poll``),
since the next request often comes within microseconds and waking the loop's halted
CPU costs more.

The loop trusts local clients to send and read whole frames: one that is *stopped*
(SIGSTOP) halfway through writing a large request, or with a large reply unread, holds
the loop until it continues or dies (dying closes its socket, which ends the wait).

The table (``table.py``) is shared by the loop, its threads and the ring thread, under
its own lock; the hand-overs between the loop and its threads (``_incoming``,
``_finished``) and the sets of threads and their connections are under the server's.
When the last connection of a session closes, for any reason (shutdown, exit, SIGKILL
mid-call), the session's holds and pins go: objects a dead client created are released.

Failure handling, per connection: a frame too large (``max_message_size``) or broken
ends that connection; a message that does not unpickle or does not have the shape of a
request gets an error reply and the connection goes on; a result that cannot be pickled
gets an error reply naming the method. None of this touches other connections.

Stopping: a ``shutdown`` request (or ``stop()``, or the death of the parent process when
the server runs in a manager's child) wakes the loop through a pipe; the loop closes
the listener and its own connections, shuts down the sockets threads serve (they see
EOF and end), waits briefly for them (a thread inside a call that never returns is left
behind, a daemon), and drops every object.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time
from typing import Any

from plait._core.framing import MAX_MESSAGE_SIZE, SpinBudget
from plait.ipc import auth
from plait.ipc.listener import HANDSHAKE_TIMEOUT
from plait.managers import proxy as _proxy
from plait.managers import rings
from plait.managers.policy import (
    INLINE,
    ONCE,
    PROMOTE,
    PROMOTE_AFTER,
    READY,
    RUN,
    TRY,
    WAIT,
    verdict,
)
from plait.managers.protocol import ERROR, RETURN, RemoteError, Request
from plait.managers.proxy import error_reply
from plait.managers.serializers import check_serializer, listener_client
from plait.managers.table import Session, Table

__all__ = ["Server"]

_HANGUP = select.POLLRDHUP  # with POLLHUP and POLLERR, which poll always reports
_JOIN_TIMEOUT = 2.0


def _refusal(why: str) -> tuple:
    """The error reply to a request that cannot be served, ready to send."""
    return READY, (ERROR, (RemoteError(why), ""))


def _checked(request: Any) -> tuple:
    """``request`` if it has the shape of one, else the error reply to send."""
    if type(request) is not tuple or len(request) != 5:
        return _refusal("malformed request")
    return request


class _Served:
    """A connection with its fd and session; ``left`` once the session let go of it."""

    __slots__ = ("conn", "fd", "sid", "session", "left", "blocked", "outbox")

    def __init__(self, conn, sid: bytes, session: Session) -> None:
        self.conn = conn
        self.fd = conn.fileno()
        self.sid = sid
        self.session = session
        self.left = False
        self.blocked = 0  # how many of its calls had to wait in a thread
        self.outbox: rings.Outbox | None = None  # its replies, if it has the rings


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
            self.server.table.hold(ident)

    def release(self, ident: int) -> None:
        self.server.table.unhold(ident)

    def pin(self, ident: int) -> None:
        # Pickled in the server: it goes in a reply, so the client's session holds it.
        session = getattr(self.server.current, "session", None)
        if session is not None:
            self.server.table.add_ref(session.held, ident)

    def call(self, ident, method, args, kwds, proxy=None):
        return self.decode(*self.server.table.call(ident, method, args, kwds, None), proxy)


class Server:
    """Serves the objects of ``registry`` at ``address`` to clients holding ``authkey``.

    ``registry`` maps a typeid to a ``table.Registration`` (or a 4-tuple of its fields:
    callable, exposed, method_to_typeid, proxytype);
    ``serializer`` is a key of ``listener_client`` (``'pickle'``, ``'xmlrpclib'``).
    Raises ``OSError`` naming the address when it cannot listen there, ``ValueError``
    for an unknown serializer.

    ``public`` lists the requests of the server itself (``dispatch(conn, None, name,
    args)``). A subclass adds its own as the standard library's do (``public =
    Server.public + ['name']``) and defines ``name(self, session, *args)`` (the client's
    session where the standard library passes its connection); they run in the loop,
    so they must return at once.
    """

    public: list[str] = [  # noqa: RUF012 - a class attribute subclasses extend, as the standard's
        "shutdown",
        "create",
        "batch",
        "get_methods",
        "debug_info",
        "number_of_objects",
        "dummy",
        "statistics",
    ]

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
        check_serializer(serializer)
        self.registry = registry
        self.authkey = authkey
        self.serializer = serializer
        listener = listener_client[serializer][0]
        self.listener = listener(address, backlog=128, max_message_size=max_message_size)
        self.address = self.listener.address
        self.table = Table(registry, self.address)
        self.current = threading.local()  # .session of the connection a thread serves
        # Guards the hand-overs between the loop and the threads below (the table has
        # its own lock).
        self._lock = threading.Lock()
        self._conns: set[Any] = set()  # connections that have a thread
        self._threads: set[threading.Thread] = set()
        # Owned by the loop thread: connections it serves, and those threads serve (watched
        # for hang-up), by fd. Threads hand connections over through the two lists.
        self._looped: dict[int, _Served] = {}
        self._watched: dict[int, _Served] = {}
        self._incoming: list[_Served] = []  # to serve in the loop (admitted, or given back)
        self._finished: list[_Served] = []  # to close (their threads are done)
        self._to_watch: list[_Served] = []  # served by their threads: watch for hang-up
        self._watch_parent = watch_parent
        self._spin = SpinBudget()  # the loop's spin before it blocks in poll
        self._stopping = False
        # The loop's wake-up pipe, made by serve_forever (a server made and never run,
        # as ``get_server()``'s can be, holds no fds but its listener's).
        self._wake_r = self._wake_w = -1
        # The rings of local clients (rings.py), made for the first one that asks.
        self._inbox: tuple | None = None  # (Ring, its Block)
        self._links: dict[bytes, _Served] = {}  # by token
        self._ring_requests = 0  # entries the ring thread took (statistics)
        self._ring_thread: threading.Thread | None = None
        self.local_client = _LocalClient(self)

    # -- the loop ------------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Serve clients until ``stop()``, a ``shutdown`` request or Ctrl-C; then clean up.

        Blocks the calling thread for the server's whole life.
        """
        # Proxies unpickled here (in requests) call this server directly from now on;
        # not before: a server made and never run (``get_server()``) must not shadow
        # a later one at the same address.
        _proxy._local_servers[self.address] = self
        self._wake_r, self._wake_w = os.pipe()
        poller = select.poll()
        listen_fd = self.listener.fileno()
        poller.register(listen_fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        parent_fd = None
        if self._watch_parent:
            from plait.process import parent_process  # noqa: PLC0415

            parent = parent_process()
            if parent is not None:
                parent_fd = parent.sentinel
                poller.register(parent_fd, select.POLLIN)
        looped = self._looped
        watched = self._watched
        ready = self._ready
        poll = poller.poll
        try:
            while not self._stopping:
                for fd, _ in ready(poll):
                    served = looped.get(fd)
                    if served is not None:
                        self._loop_request(poller, served)
                    elif fd in watched:
                        self._hung_up(poller, watched.pop(fd))
                    elif fd == listen_fd:
                        self._accept()
                    elif fd == self._wake_r:
                        os.read(self._wake_r, 512)
                        self._take_handovers(poller)
                    elif fd == parent_fd:
                        self._stopping = True  # the parent is gone: nobody will stop us
        except KeyboardInterrupt:
            pass
        finally:
            self._close()

    def _ready(self, poll) -> list:
        """The next ready fds: ``poll(0)`` a few times before ``poll()`` blocks, with the
        adaptive budget of ``plait._core.framing``'s receive (see "Where the time goes")."""
        spin = self._spin
        spins = spin.tries()
        for tried in range(spins):
            ready = poll(0)
            if ready:
                if tried:  # the spin waited for a request, and caught it
                    spin.caught(spins)
                return ready
        spin.missed()
        return poll()

    def stop(self) -> None:
        """Make ``serve_forever`` return (never blocks; idempotent)."""
        self._stopping = True
        self._wake()
        inbox = self._inbox
        if inbox is not None:  # wake the ring thread with an entry nobody sent
            inbox[0].put(rings.PLAIN, (bytes(rings.TOKEN_SIZE),), False)

    def _wake(self) -> None:
        if self._wake_w < 0:
            return  # not serving (yet, or any more): nobody to wake
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _accept(self) -> None:
        try:
            conn = self.listener.accept(timeout=0)
        except (TimeoutError, OSError):
            return  # the client gave up before we took it; or out of fds
        self._start_thread(self._admit, conn, self.listener.last_accepted)

    def _start_thread(self, target, conn, *args) -> None:
        thread = threading.Thread(
            target=target, args=(conn, *args), name="plait-manager-client", daemon=True
        )
        with self._lock:
            self._conns.add(conn)
            self._threads.add(thread)
        thread.start()

    def _to_thread(self, poller, served: _Served, target, request: tuple) -> None:
        """Hand a looped connection to a thread; the loop keeps watching it for hang-up."""
        poller.modify(served.fd, _HANGUP)
        del self._looped[served.fd]
        self._watched[served.fd] = served
        self._start_thread(target, served.conn, served, request)

    def _hand_back(self, served: _Served, to: list) -> None:
        """From a thread: give ``served`` to the loop (``_incoming`` or ``_finished``)."""
        with self._lock:
            to.append(served)
            self._conns.discard(served.conn)
            self._threads.discard(threading.current_thread())
        self._wake()

    def _hung_up(self, poller, served: _Served) -> None:
        """The client of a connection a thread serves is gone: release what it held now,
        not when the call the thread is in returns (that may be never)."""
        poller.unregister(served.fd)
        self._release(served)

    def _take_handovers(self, poller) -> None:
        with self._lock:
            to_watch, self._to_watch = self._to_watch, []
            incoming, self._incoming = self._incoming, []
            finished, self._finished = self._finished, []
        watched = self._watched
        for served in to_watch:  # before finished: its thread may be done already
            watched[served.fd] = served
            poller.register(served.fd, _HANGUP)
        for served in finished:
            if watched.get(served.fd) is served:
                del watched[served.fd]
                poller.unregister(served.fd)
            served.conn.close()
            self._release(served)
        for served in incoming:
            if watched.get(served.fd) is served:
                del watched[served.fd]
            elif served.left:  # it hung up while a thread served it
                served.conn.close()
                continue
            self._looped[served.fd] = served
            poller.register(served.fd, select.POLLIN)

    def _release(self, served: _Served) -> None:
        if not served.left:
            served.left = True
            if served.outbox is not None:
                self._links.pop(served.outbox.token, None)
                served.outbox.close()
            self.table.leave(served.sid, served.session)

    def _close(self) -> None:
        self.listener.close()
        if self._ring_thread is not None:
            self.stop()  # wakes the ring thread, if still needed
            self._ring_thread.join(_JOIN_TIMEOUT)
            block = self._inbox[1]
            self._inbox = None
            rings.free(block)
        for served in list(self._looped.values()):
            served.conn.close()
            self._release(served)
        self._looped.clear()
        with self._lock:
            conns = list(self._conns)
            threads = list(self._threads)
        for conn in conns:
            _shutdown_socket(conn)
        # A thread in a call that never returns is left behind (a daemon); in a manager's
        # child the process ends next, so waiting long would only delay shutdown().
        join_timeout = 0.2 if self._watch_parent else _JOIN_TIMEOUT
        deadline = time.monotonic() + join_timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            rest = [*self._incoming, *self._finished, *self._to_watch, *self._watched.values()]
            self._incoming, self._finished, self._to_watch = [], [], []
            self._watched.clear()
        for served in rest:  # handed over while the loop was stopping, or still in a call
            served.conn.close()
            self._release(served)
        self.table.clear()
        if _proxy._local_servers.get(self.address) is self:
            del _proxy._local_servers[self.address]
        wake_r, wake_w = self._wake_r, self._wake_w
        self._wake_r = self._wake_w = -1  # never write to a number the system reuses
        os.close(wake_r)
        os.close(wake_w)

    def statistics(self) -> dict[str, int]:
        """A snapshot: objects, client sessions, connections served by the loop, threads
        serving connections, connections with rings, inbox entries taken."""
        table = self.table
        with table.lock:
            objects, sessions = len(table.objects), len(table.sessions)
        with self._lock:
            return {
                "objects": objects,
                "sessions": sessions,
                "loop_connections": len(self._looped),
                "threads": len(self._threads),
                "ring_connections": len(self._links),
                "ring_requests": self._ring_requests,
            }

    # -- one client ----------------------------------------------------------------------

    def _admit(self, conn, peer: Any) -> None:
        """A new client's thread: handshake and hello, then to the loop or served here."""
        session = sid = None
        try:
            try:
                auth.serve_handshake(
                    conn, self.authkey, HANDSHAKE_TIMEOUT, f"client {peer!r} of {self.address!r}"
                )
                hello = conn.recv(timeout=HANDSHAKE_TIMEOUT)
            except Exception:  # wrong key, garbage, silence, a hello that does not unpickle
                return
            if type(hello) is tuple and len(hello) == 5:
                # No hello: a connection of ``dispatch()``, a session of its own,
                # served by this thread.
                sid = os.urandom(12)
                session = self.table.join(sid)
                self.current.session = session
                if self._answer(conn, _checked(hello), session):
                    self._serve(conn, session)
                return
            if not (isinstance(hello, tuple) and len(hello) in (2, 4) and hello[0] == "#hello"):
                return
            sid = hello[1]
            if not isinstance(sid, bytes):
                return
            session = self.table.join(sid)
            served = _Served(conn, sid, session)
            if conn._channel.unix and not self._stopping:
                # Local clients go to the loop. TCP ones keep their thread: a stream peer
                # could stall the loop in the middle of a frame.
                if len(hello) == 4 and hello[2] == "rings":
                    self._give_rings(served, hello[3])
                self._hand_back(served, self._incoming)
                conn = session = None
                return
            # The loop watches it for hang-up meanwhile, as a looped connection's thread,
            # and closes and releases it once this thread hands it back.
            with self._lock:
                self._to_watch.append(served)
            self._wake()
            conn = session = None
            try:
                self._serve(served.conn, served.session)
            finally:
                self._hand_back(served, self._finished)
        finally:
            if conn is not None:
                conn.close()
                with self._lock:
                    self._conns.discard(conn)
                    self._threads.discard(threading.current_thread())
            if session is not None:
                self.table.leave(sid, session)

    def _loop_request(self, poller, served: _Served) -> None:
        """Serve one request of a looped connection; hand it to a thread if it may block."""
        request = self._receive(served.conn)
        if request is None:
            self._drop(poller, served)
            return
        outcome = self._run_now(served.session, request)
        if outcome is WAIT:
            served.blocked += 1
            promote = served.blocked >= PROMOTE_AFTER
            target = self._serve_promoted if promote else self._serve_once
        elif outcome is ONCE:
            target = self._serve_once
        elif outcome is PROMOTE:
            target = self._serve_promoted
        else:
            if not self._answer(served.conn, outcome, served.session):
                self._drop(poller, served)
            return
        # _run_now applied the control list: the thread must not apply it again
        ident, method, args, kwds, _ = request
        self._to_thread(poller, served, target, Request(ident, method, args, kwds, None))

    def _run_now(self, session: Session, request: tuple) -> Any:
        """Run ``request`` if it cannot block. Returns what ``_answer`` sends (the reply
        as ``(READY, reply)``, or the request itself for the server's own queries), or
        how a thread must serve it instead: ``WAIT`` (a queue or event call that would
        block), ``ONCE`` (a thread runs it, then gives the connection back) or
        ``PROMOTE`` (a thread serves the connection from now on). Applies the request's
        control list in every case."""
        if request[0] is READY:
            return request
        ident, method, args, kwds, control = request
        table = self.table
        if control:
            table.control(session, control)
        if ident is not None:  # the hot path: a call on an object, its entry's verdict
            entry = table.objects.get(ident)
            mode = INLINE if entry is None else entry.mode  # unknown: the error, at once
        else:
            mode = verdict(table, self.public, method, args)
        self.current.session = session
        if mode is INLINE:
            if ident is not None:  # the hot path: a call that cannot block
                return READY, table.call(ident, method, args, kwds, session)
            return Request(ident, method, args, kwds, None)
        if mode is TRY:
            reply = self._attempt(ident, method, args, kwds, session)
            return WAIT if reply is None else (READY, reply)
        return ONCE if mode is ONCE else PROMOTE

    # -- the rings of local clients (rings.py) --------------------------------------------

    def _give_rings(self, served: _Served, pid: Any) -> None:
        """Answer a hello that asks for rings: ``("#rings", inbox, outbox, token)``, or
        ``("#socket",)`` when none can be made (out of memory or fds), or when the client
        lives in another pid namespace (a container sharing the socket's directory): the
        pid it says is not the one the socket sees, and the rings' locks, which tell a
        dead holder by its pid, would take it for dead."""
        if pid != _peer_pid(served.conn):
            served.conn.send(("#socket",))
            return
        try:
            with self._lock:
                if self._inbox is None:
                    self._inbox = rings.make_ring(rings.INBOX_CAPACITY)
                    self._ring_thread = threading.Thread(
                        target=self._serve_rings, name="plait-manager-rings", daemon=True
                    )
                    self._ring_thread.start()
            outbox = rings.Outbox(served.conn)
        except OSError:
            served.conn.send(("#socket",))
            return
        served.outbox = outbox
        self._links[outbox.token] = served
        try:
            served.conn.send(("#rings", self._inbox[1], outbox.block, outbox.token))
        except BaseException:
            self._links.pop(outbox.token, None)
            served.outbox = None
            outbox.close()
            raise
        outbox.block.close_fd()  # it has travelled; the mapping stays

    def _serve_rings(self) -> None:
        """The ring thread: answer local clients' requests from the inbox until stopped."""
        inbox = self._inbox[0]
        links = self._links
        token_size = rings.TOKEN_SIZE
        ready = inbox.qsize
        yields = rings.YIELDS
        pause = os.sched_yield
        while not self._stopping:
            for _ in range(yields):
                if ready():
                    break
                pause()
            data = inbox.get(True, _JOIN_TIMEOUT)
            if type(data) is not bytes:  # False: nothing came; else not an entry of ours
                continue
            self._ring_requests += 1
            token = data[:token_size]
            served = links.get(token)
            if served is None:
                continue  # a wake-up, or from a client that has gone
            try:
                if self._ring_request(served, data):
                    continue
            except Exception:  # a bug here must cost one connection, not the thread
                pass
            links.pop(token, None)  # it stopped reading, or broke: end the connection
            _shutdown_socket(served.conn)

    def _ring_request(self, served: _Served, data: bytes) -> bool:
        """Serve one inbox entry of ``served``; False: its outbox is full or gone."""
        try:
            request = _checked(rings.loads_request(data))
        except Exception as exc:
            request = _refusal(f"cannot unpickle the request: {exc!r}")
        outcome = self._run_now(served.session, request)
        try:
            if outcome is WAIT or outcome is ONCE or outcome is PROMOTE:
                served.outbox.redirect()  # the loop and its threads serve it on the socket
                return True
        except OSError:
            return False
        return self._answer(served.outbox, outcome, served.session)

    def _drop(self, poller, served: _Served) -> None:
        """Stop serving a looped connection that ended or broke."""
        poller.unregister(served.fd)
        del self._looped[served.fd]
        served.conn.close()
        self._release(served)

    def _serve_once(self, conn, served: _Served, request: tuple) -> None:
        """Answer one request that may block, then give the connection back to the loop."""
        ok = False
        try:
            self.current.session = served.session
            ok = self._answer(conn, request, served.session) and not self._stopping
        finally:
            self._hand_back(served, self._incoming if ok else self._finished)

    def _serve_promoted(self, conn, served: _Served, request: tuple) -> None:
        """Serve a connection from the loop in this thread until it ends."""
        try:
            self.current.session = served.session
            if self._answer(conn, request, served.session):
                self._serve(conn, served.session)
        finally:
            self._hand_back(served, self._finished)

    def _attempt(self, ident: int, method: str, args: Any, kwds: Any, session) -> tuple | None:
        """The reply of a call on a queue or event if it can be had without blocking."""
        table = self.table
        try:
            entry = table.objects[ident]
            if method not in entry.exposed:
                return table.call(ident, method, args, kwds, session)  # the error, at once
            reply = entry.attempt(entry.obj, method, args, kwds)
        except Exception as exc:
            return error_reply(exc)
        if reply is RUN:
            return table.call(ident, method, args, kwds, session)
        return reply

    def _serve(self, conn, session: Session) -> None:
        """Serve a connection in this thread until it ends."""
        self.current.session = session
        receive = self._receive
        answer = self._answer
        while True:
            request = receive(conn)
            if request is None or not answer(conn, request, session):
                return

    def _receive(self, conn):
        """The next request, an error reply to send for a bad one, or None at the end."""
        try:
            request = conn.recv()
        except Exception as exc:
            if isinstance(exc, EOFError | OSError) or conn.closed:
                return None  # gone, or a frame we could not take (the connection is closed)
            return _refusal(f"cannot unpickle the request: {exc!r}")
        return _checked(request)

    def _answer(self, conn, request: tuple, session: Session) -> bool:
        """Run a request (or pass on an error reply), send the reply; False: conn is gone."""
        if request[0] is READY:
            _, reply = request
            ident = method = None
        else:
            ident, method, args, kwds, control = request
            if control:
                self.table.control(session, control)
            if ident is None:
                reply = self._special(method, args, session)
            else:
                reply = self.table.call(ident, method, args, kwds, session)
        if not self._send_reply(conn, reply):
            return False
        if ident is None and method == "shutdown" and reply[0] == RETURN:
            self.stop()
        return True

    @staticmethod
    def _send_reply(conn, reply: tuple) -> bool:
        """Send ``reply`` (or the error of sending it); False: the connection is gone."""
        try:
            conn.send(reply)
        except OSError:
            return False
        except Exception as exc:  # the result does not pickle, or is too large
            try:
                conn.send((ERROR, (RemoteError(f"cannot send the reply: {exc!r}"), "")))
            except OSError:
                return False
        return True

    def _special(self, method: str, args: Any, session: Session) -> tuple:
        try:
            if method == "batch":
                call = self.table.call
                return RETURN, [call(i, m, a, k, session) for i, m, a, k in args]
            if method == "create":
                typeid, cargs, ckwds = args
                try:
                    return RETURN, self.table.create(session, typeid, *cargs, **ckwds)
                except Exception as exc:  # as the standard library: RemoteError, its text
                    _, (_, tb) = error_reply(exc)
                    return ERROR, (RemoteError(tb.lstrip("\n")), tb)
            if method == "get_methods":
                return RETURN, sorted(self.table.objects[args[0]].exposed)
            if method == "dummy" or method == "shutdown":
                return RETURN, None
            if method == "number_of_objects":
                return RETURN, self.table.number_of_objects()
            if method == "debug_info":
                return RETURN, self.table.debug_info()
            if method == "statistics":
                return RETURN, self.statistics()
            if method in self.public:
                return RETURN, getattr(self, method)(session, *args)
            raise RemoteError(f"unknown request {method!r} to the manager at {self.address!r}")
        except Exception as exc:
            return error_reply(exc)


def _peer_pid(conn) -> int | None:
    """The pid of the process at the other end of a Unix-socket ``conn`` (SO_PEERCRED)."""
    try:
        sock = socket.socket(fileno=conn.fileno())
    except OSError:
        return None
    try:
        pid, _, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        return pid
    except OSError:
        return None
    finally:
        sock.detach()


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
