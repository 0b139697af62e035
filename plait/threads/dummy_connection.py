"""Connections between threads: the ``multiprocessing.connection`` API over thread queues.

What ``multiprocessing.dummy.connection`` is. Threads share memory, so a message needs
no pickle and no socket: a connection end is a pair of *inboxes*, the one it receives
from and the one its peer receives from, and ``send(obj)`` hands the object itself to
the peer (the receiver gets the very object, not a copy, as with a thread queue).

Theory of operation
-------------------
An inbox is a plait thread ``Queue`` (the C engine of ``plait/_core/_queue.c``: ``send``
is its ``put``, ``recv`` its ``get``) plus what ``poll`` needs, which a queue does not
offer: waiting until an item is there *without taking it*. A poller registers in the
inbox's ``pollers`` count under the inbox's condition, then waits on the condition until
``qsize() > 0``; a sender puts the item first and reads ``pollers`` second, and only when
it is non-zero takes the condition to wake them. Under the GIL (which the queue engine
keeps even on a free-threaded build) these steps are sequentially consistent, so no
wakeup is lost: a sender that reads zero ran its ``put`` before the poller registered,
and the poller's first check of ``qsize()`` sees the item; a sender that reads non-zero
notifies under the condition, which the poller holds from its check until it sleeps.
Without pollers, ``send`` costs one ``put`` and one attribute read.

A ``Listener``'s ``address`` is its backlog, a bounded queue of inbox pairs: ``Client``
puts a fresh pair there (blocking while the backlog is full, as a connect does when a
server's backlog is), ``accept`` takes one. Closing the listener shuts the backlog
down, so a later ``Client`` is refused instead of waiting for an accept that never comes.

Closing a connection end changes nothing: the end is one object shared by the threads
that hold it, and the standard pattern of closing "the child's end" in the parent right
after starting the child thread must not take it away from the child. ``Pipe(duplex=
False)`` is honoured: the reading end cannot send and the writing end cannot receive.
"""

from __future__ import annotations

from typing import Any

from plait._core.errors import BufferTooShort
from plait.threads.queues import Empty, Full, Queue, ShutDown
from plait.threads.sync import Condition, Lock

__all__ = ["Client", "Connection", "Listener", "Pipe", "families"]

# The address families a Listener accepts: only None, an address inside this process.
families: list[None] = [None]


class _Inbox:
    """The messages waiting for one connection end, and the threads polling for them."""

    __slots__ = ("items", "pollers", "arrived")

    def __init__(self) -> None:
        self.items = Queue()
        self.pollers = 0  # threads inside poll(); changed only under `arrived`
        self.arrived = Condition(Lock())


class Connection:
    """One end of a thread-backed pipe: ``send``/``recv`` objects, ``poll`` for them.

    Made by ``Pipe``, ``Client`` and ``Listener.accept``. Blocking calls take a keyword
    ``timeout`` (``TimeoutError`` when it passes), as plait's process connections do.
    """

    __slots__ = ("_inbox", "_outbox")

    def __init__(self, _in: _Inbox | None, _out: _Inbox | None) -> None:
        self._inbox = _in
        self._outbox = _out

    def __repr__(self) -> str:
        mode = {(True, True): "duplex", (True, False): "read-only", (False, True): "write-only"}
        return f"<{type(self).__qualname__} between threads, {mode[self.readable, self.writable]}>"

    @property
    def readable(self) -> bool:
        """True if this end can receive."""
        return self._inbox is not None

    @property
    def writable(self) -> bool:
        """True if this end can send."""
        return self._outbox is not None

    @property
    def closed(self) -> bool:
        """Always False: closing a thread-backed end changes nothing (see the module)."""
        return False

    def fileno(self) -> int:
        """Raises ``OSError``: a connection between threads has no file descriptor."""
        raise OSError(
            "a thread-backed connection (multiprocessing.dummy) has no file descriptor;"
            " use multiprocessing.Pipe for one that can be waited on with select"
        )

    def close(self) -> None:
        """Nothing to release; the end stays usable by every thread holding it."""

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending ----------------------------------------------------------------------

    def send(self, obj: Any) -> None:
        """Hand ``obj`` (the object itself, not a copy) to the peer. Never blocks.

        Raises ``OSError`` on the reading end of a one-way pipe.
        """
        outbox = self._outbox
        if outbox is None:
            raise OSError("connection is read-only")
        outbox.items.put(obj)
        if outbox.pollers:
            with outbox.arrived:
                outbox.arrived.notify_all()

    def send_bytes(self, buf: Any, offset: int = 0, size: int | None = None) -> None:
        """Send ``size`` bytes of the buffer ``buf`` from byte ``offset`` (all by default).

        Without ``offset`` and ``size`` this is ``send(buf)``, as in the standard module:
        the object itself travels (``recv_bytes`` returns what ``send`` sent, too). A
        slice is copied into ``bytes``. Raises ``ValueError`` for an offset or size
        outside the buffer, ``TypeError`` for an object that is not a buffer.
        """
        if offset == 0 and size is None:
            self.send(buf)
            return
        with memoryview(buf) as m:
            flat = m.cast("B")
            length = flat.nbytes
            if offset < 0:
                raise ValueError("offset is negative")
            if length < offset:
                raise ValueError("buffer length < offset")
            if size is None:
                size = length - offset
            elif size < 0:
                raise ValueError("size is negative")
            elif offset + size > length:
                raise ValueError("buffer length < offset + size")
            data = bytes(flat[offset : offset + size])
        self.send(data)

    # -- receiving ----------------------------------------------------------------------

    def recv(self, *, timeout: float | None = None) -> Any:
        """Take the oldest message; blocks until one comes or ``timeout`` seconds pass.

        Raises ``TimeoutError`` when the timeout passes (``None`` waits forever),
        ``OSError`` on the writing end of a one-way pipe.
        """
        inbox = self._inbox
        if inbox is None:
            raise OSError("connection is write-only")
        try:
            return inbox.items.get(True, timeout)
        except Empty:
            raise TimeoutError(f"no message within {timeout} s") from None

    def recv_bytes(self, maxlength: int | None = None, *, timeout: float | None = None) -> Any:
        """Take the oldest message, as sent by ``send_bytes``; blocks like ``recv``.

        A message longer than ``maxlength`` raises ``OSError("bad message length")``.
        """
        if maxlength is not None and maxlength < 0:
            raise ValueError("negative maxlength")
        data = self.recv(timeout=timeout)
        if maxlength is not None and len(data) > maxlength:
            raise OSError("bad message length")
        return data

    def recv_bytes_into(self, buf: Any, offset: int = 0, *, timeout: float | None = None) -> int:
        """Take the oldest message into the writable buffer ``buf`` at byte ``offset``.

        Returns the message's length in bytes; blocks like ``recv``. Raises
        ``BufferTooShort`` (the message in ``args[0]``) when it does not fit.
        """
        with memoryview(buf) as m:
            if m.readonly:
                raise TypeError("recv_bytes_into needs a writable buffer")
            flat = m.cast("B")
            if offset < 0:
                raise ValueError("negative offset")
            if offset > flat.nbytes:
                raise ValueError("offset too large")
            data = self.recv(timeout=timeout)
            with memoryview(data) as message:
                size = message.nbytes
                if flat.nbytes < offset + size:
                    raise BufferTooShort(bytes(message))
                flat[offset : offset + size] = message.cast("B")
            return size

    def poll(self, timeout: float | None = 0.0) -> bool:
        """Whether a message is waiting; waits up to ``timeout`` seconds for one.

        ``None`` waits until one comes; zero or less only looks. Takes nothing.
        Raises ``OSError`` on the writing end of a one-way pipe.
        """
        inbox = self._inbox
        if inbox is None:
            raise OSError("connection is write-only")
        items = inbox.items
        if items.qsize():
            return True
        if timeout is not None and timeout <= 0:
            return False
        with inbox.arrived:
            inbox.pollers += 1
            try:
                return bool(inbox.arrived.wait_for(items.qsize, timeout))
            finally:
                inbox.pollers -= 1


def Pipe(duplex: bool = True) -> tuple[Connection, Connection]:  # noqa: N802 - standard name
    """A pair of connected ends; with ``duplex=False`` the first only receives, the
    second only sends."""
    a = _Inbox()
    if not duplex:
        return Connection(a, None), Connection(None, a)
    b = _Inbox()
    return Connection(a, b), Connection(b, a)


class Listener:
    """Accepts ``Client`` connections from threads of this process.

    ``address`` is what a ``Client`` connects to: an object, valid only inside this
    process. ``address`` and ``family`` are accepted for the standard signature and
    ignored (``families`` is ``[None]``); ``backlog`` is how many clients may wait for
    ``accept`` before ``Client`` blocks.
    """

    def __init__(self, address: Any = None, family: Any = None, backlog: int = 1) -> None:
        self._backlog = Queue(backlog)

    def __repr__(self) -> str:
        state = "closed" if self._backlog.is_shutdown else "listening"
        return f"<{type(self).__qualname__} between threads, {state}>"

    @property
    def address(self) -> Queue:
        """What ``Client`` takes to connect to this listener."""
        return self._backlog

    def accept(self, *, timeout: float | None = None) -> Connection:
        """Take the next client; blocks until one connects or ``timeout`` seconds pass.

        Raises ``TimeoutError`` when the timeout passes (``None`` waits forever),
        ``OSError`` if the listener is closed.
        """
        try:
            inbox, outbox = self._backlog.get(True, timeout)
        except Empty:
            raise TimeoutError(f"no client connected within {timeout} s") from None
        except ShutDown:
            raise OSError("listener is closed") from None
        return Connection(inbox, outbox)

    def close(self) -> None:
        """Stop listening: later clients are refused. Idempotent; never blocks."""
        self._backlog.shutdown()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def Client(address: Queue, *, timeout: float | None = None) -> Connection:  # noqa: N802
    """Connect to the ``Listener`` whose ``address`` this is.

    Blocks while the listener's backlog is full (until it accepts), up to ``timeout``
    seconds (then ``TimeoutError``). Raises ``ConnectionRefusedError`` if the listener is
    closed.
    """
    to_client, to_listener = _Inbox(), _Inbox()
    try:
        address.put((to_listener, to_client), timeout=timeout)
    except Full:
        raise TimeoutError(f"the Listener's backlog stayed full for {timeout} seconds") from None
    except ShutDown:
        message = "the thread-backed Listener at this address is closed"
        raise ConnectionRefusedError(message) from None
    return Connection(to_client, to_listener)
