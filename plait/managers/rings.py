"""The fast path of local clients: requests and replies through shared-memory rings.

Theory of operation
-------------------
A client on the server's machine (a Unix-socket connection) asks for rings in its
hello. The server then gives it two rings of ``plait._core._ring`` (the memory of
plait's process queues, futexes to sleep on) and a token::

    inbox   one per server, shared by every local connection: token + request pickle
    outbox  one per connection: the replies to its requests, in order

A call is then one ``put`` into the inbox and one ``get`` from the outbox: no system
call at all while the other side is awake (each side spins briefly before it sleeps on
a futex, and only wakes the other if it sleeps), where a socket costs a ``send``, a
``recv`` and a ``poll`` on the server and a ``send`` and a ``recv`` on the client. One
server thread (``Server._serve_rings``) takes the inbox's requests, whichever client
sent them, and answers the ones that cannot block (the calls the loop serves inline;
see server.py); on a 2-core VM with 4 client processes this takes a managed dict from
~60k to ~150k operations per second (``benchmarks/bench_managers.py``).

The socket stays, for what the rings do not carry, and it still holds the session:

- a request that may block (``Lock.acquire``, ``Queue.get`` on an empty queue, a
  user's type) is answered ``REDIRECT``: the call did not run (its control list of
  reference counts did), and the client sends it again on its socket, without the
  control list, where the loop and its threads serve it as before;
- a request or reply over ``RING_MESSAGE_MAX`` bytes, or one that carries fds (a
  ``Connection`` as an argument), travels on the socket; a reply there is announced
  by ``ON_SOCKET`` in the outbox;
- the client's death closes the socket, which releases its session (and its
  outbox); the server's death is seen by a client waiting for a reply as a hang-up of
  its socket (it looks every ``SLICE`` seconds).

Every local client passed the HMAC handshake before it got the rings, and an
authenticated client may already run any code in the server (requests are pickles),
so sharing the inbox among them adds no power. A malformed entry gets an error reply,
or is dropped if its token is unknown; a client that sends requests without reading
their replies loses its connection when its outbox is full.
"""

from __future__ import annotations

import os
import pickle
import select

from plait._core._ring import HEADER_SIZE, PLAIN, Ring
from plait._core.block import Block
from plait._core.serialization import PROTOCOL

__all__ = ["RingLink", "Outbox", "make_ring", "loads_request", "PLAIN", "TOKEN_SIZE"]

INBOX_CAPACITY = 1 << 20
OUTBOX_CAPACITY = 1 << 17
RING_MESSAGE_MAX = 1 << 16  # larger requests and replies take the socket
TOKEN_SIZE = 8
SLICE = 0.1  # seconds a client waits for a reply before it looks at its socket
REDIRECT = b"R"  # "send this request on the socket": nothing ran
ON_SOCKET = b"S"  # "the reply is on the socket"
_PICKLE = 0x80  # the first byte of every pickle of protocol 2 and up
# Before it sleeps on the futex, a side waiting for the other yields its CPU this many
# times, looking between yields (~0.6 µs each when nothing else wants the CPU). Spinning
# in place instead lost the CPU to the very process it waited for whenever the kernel
# woke the server on the client's core: 1 client swung from 24k to 168k operations per
# second between runs; yielding holds it at ~160k (20, 50 or 200 yields alike).
YIELDS = 50
_yield = os.sched_yield
_dumps = pickle.dumps
_loads = pickle.loads


def make_ring(capacity: int) -> tuple[Ring, Block]:
    """A new ring of ``capacity`` bytes in a memfd block (the block travels to clients)."""
    block = Block(HEADER_SIZE + capacity, name="plait-manager-ring")
    return attach_ring(block, create=True), block


def attach_ring(block: Block, create: bool = False) -> Ring:
    ring = Ring()
    ring._attach(block.mm, -1, -1, create=create)  # PLAIN entries only: no segments
    return ring


class _Closed:
    """In place of the rings of a closed link or outbox: every use raises ``OSError``."""

    def put(self, *args) -> None:
        raise OSError("handle is closed")

    get = put


_CLOSED = _Closed()


def free(*blocks: Block) -> None:
    """Unmap the blocks and close their fds once their rings are dropped."""
    for block in blocks:
        try:
            block.close()
        except BufferError:  # a ring is still in use (another thread): the GC unmaps it
            block.close_fd()


def loads_request(entry: bytes):
    """The request in an inbox entry (after its token); raises what unpickling raises."""
    return _loads(memoryview(entry)[TOKEN_SIZE:])


class RingLink:
    """A client connection with the rings: ``send`` a request, ``recv`` its reply.

    Used by ``proxy._Client`` in place of the ``Connection`` it wraps (``conn``), and
    like it: ``recv`` raises ``EOFError`` once the server is gone.
    """

    __slots__ = (
        "conn",
        "_inbox",
        "_outbox",
        "_blocks",
        "_token",
        "_on_socket",
        "_last",
        "__weakref__",
    )

    def __init__(self, conn, inbox: Block, outbox: Block, token: bytes) -> None:
        self.conn = conn
        self._inbox = attach_ring(inbox)
        self._outbox = attach_ring(outbox)
        self._blocks = (inbox, outbox)
        for block in self._blocks:
            block.close_fd()  # the mapping holds a copy of it until closed
        self._token = token
        self._on_socket = False  # where the reply to the last request comes
        self._last = ()  # the last request sent through the rings

    @property
    def closed(self) -> bool:
        return self.conn.closed

    def fileno(self) -> int:
        return self.conn.fileno()

    def close(self) -> None:
        self.conn.close()
        self._inbox = self._outbox = _CLOSED
        free(*self._blocks)

    def send(self, obj) -> None:
        try:
            payload = _dumps(obj, PROTOCOL)
        except Exception:  # fds (they need the socket's collector), lambdas: the socket says
            self._on_socket = True
            self.conn.send(obj)
            return
        if len(payload) > RING_MESSAGE_MAX:
            self._on_socket = True
            self.conn.send_bytes(payload)
            return
        self._on_socket = False
        self._last = obj
        entry = (self._token + payload,)
        while not self._inbox.put(PLAIN, entry, True, SLICE):
            self._check_server()  # the inbox stayed full: is anybody reading it?

    def recv(self):
        if self._on_socket:
            return self.conn.recv()
        data = self._take()
        last, self._last = self._last, ()  # do not keep the arguments alive
        if data[0] == _PICKLE:
            return _loads(data)
        if data == REDIRECT:  # the server applied the control list (the last item)
            self._on_socket = True
            self.conn.send((*last[:-1], None))
        del last
        return self.conn.recv()  # REDIRECT, or ON_SOCKET

    def _take(self) -> bytes:
        """The next outbox entry. (Apart from ``recv``, whose frame may outlive the call:
        tblib, which dask installs, rebuilds a traceback's frames under the unpickling
        frame, and a frame holding a ring keeps its mapping and fd after ``close``.)"""
        outbox = self._outbox
        ready = outbox.qsize
        for _ in range(YIELDS):
            if ready():
                break
            _yield()
        while True:
            data = outbox.get(True, SLICE)
            if data is not False:
                return data
            self._check_server()

    def _check_server(self) -> None:
        poller = select.poll()
        poller.register(self.conn.fileno(), select.POLLRDHUP)
        if poller.poll(0):
            raise EOFError("the manager's server hung up")


class Outbox:
    """The server's end of one connection's outbox: ``send`` a reply as its socket would."""

    __slots__ = ("conn", "ring", "block", "token", "socket_next")

    # ring: this connection's outbox; block: its memory (the fd travels once, then the
    # server's hello closes it: close_fd), token: what the client's requests start with;
    # socket_next: ON_SOCKET was put, and the reply then failed to pickle: its error
    # reply follows on the socket, where the client reads.

    def __init__(self, conn) -> None:
        self.conn = conn
        self.ring, self.block = make_ring(OUTBOX_CAPACITY)
        self.token = os.urandom(TOKEN_SIZE)
        self.socket_next = False

    def send(self, reply) -> None:
        """Raises ``OSError`` when the client is gone or stopped reading; the pickling
        error of a reply that cannot be sent (nothing was sent: send the error reply
        next). ``ON_SOCKET`` goes first: the client reads the socket only once it sees
        it, and a reply larger than the socket's buffer waits for that."""
        if self.socket_next:
            self.socket_next = False
            self.conn.send(reply)
            return
        try:
            payload = _dumps(reply, PROTOCOL)
        except Exception:  # fds: the socket's collector may take it
            self._put(ON_SOCKET)
            self.socket_next = True
            self.conn.send(reply)
            self.socket_next = False
            return
        if len(payload) > RING_MESSAGE_MAX:
            self._put(ON_SOCKET)
            self.conn.send_bytes(payload)
            return
        self._put(payload)

    def close(self) -> None:
        """Free the ring's memory and fd (the client is gone); later sends raise."""
        self.ring = _CLOSED
        free(self.block)

    def redirect(self) -> None:
        self._put(REDIRECT)

    def _put(self, data: bytes) -> None:
        if not self.ring.put(PLAIN, (data,), False):
            raise OSError("the client stopped reading its replies")
