"""Framing: messages of bytes, out-of-band buffers and fds over one socket.

Theory of operation
-------------------
A frame is a 16-byte header, a table of buffer lengths, and a body::

    header  = kind:u8  nfds:u8  zero:u16  count:u32  size:u64     (little endian)
    table   = count x u64: the length of each out-of-band buffer
    body    = payload (size bytes), then the buffers, back to back

``kind`` says where the body is. ``PLAIN``: the payload only, inline (``count`` is 0).
``INLINE``: payload and buffers inline. ``SEGMENT``: nothing inline; payload and buffers
lie in a sealed ``memfd`` (see ``segment``) sent as the first of the frame's ``nfds``
fds. The other fds are those the payload's pickle refers to (see ``fdpass``).

A frame that carries fds is announced by a lone header of kind ``FDS_NEXT`` (all other
fields zero). That keeps the common read cheap: the receiver reads with a plain
``recv_into`` and switches to ``recvmsg_into`` with room for ancillary data only after an
announcement. Fds a peer sends unannounced are dropped (and closed) by the kernel.

Two transports, chosen by the socket type:

* ``SOCK_SEQPACKET`` (Unix sockets: ``Pipe``, Unix listeners) keeps record boundaries.
  A frame goes out as records, each written by one ``sendmsg`` of the parts' memory as
  it lies (no joining; a small message is joined to its header, one short copy being
  cheaper than a two-part ``sendmsg``). The first record holds the header and the table
  (and the fds) and at most ``RECORD_SIZE`` bytes: the receiver reads it into a buffer
  allocated once per channel, so a small message arrives with one system call
  (``recv_into`` with ``MSG_TRUNC``, so that a record too large for the buffer is
  reported with its real length, not silently cut), header and payload together, and
  never a byte of the next message: a connection never holds data the kernel does not
  show as readable, so ``poll`` and ``wait`` can ask the fd alone.
  The receiver then allocates the payload and each buffer once and
  scatters the following records straight into them; those records can be as large as
  the sender's socket buffer allows (up to 1 MiB), since the space they land in is
  exactly the rest of the frame. A record larger than the space offered would be cut by
  the kernel: the sender never writes one, and a cut record is an error.
* ``SOCK_STREAM`` (TCP, or a Unix stream socket handed to ``Connection``) has no
  boundaries: the receiver reads exactly the header, then exactly the table, then
  scatters the body into its buffers.

Very large messages (``SEGMENT_THRESHOLD``, 32 MiB, and up) over Unix sockets travel
as segments: one copy into the ``memfd`` by the sender, none by the receiver, which maps
the segment and hands out views of it. Below that size two copies through the socket
are faster, because a fresh segment's pages must be allocated and faulted in, while the
socket recycles hot kernel pages; above it the copy saved wins.
A payload without buffers is received into a scratch buffer the channel keeps (up to
16 MiB), since the caller unpickles or copies it at once.

Limits: a frame whose payload plus buffers exceed the channel's ``max_message_size`` is
refused by the sender before a byte is written (``MessageTooLarge``, a ``ValueError``),
and by the receiver as soon as it reads the header, before it allocates anything. A
header that makes no sense (unknown kind, fds that did not arrive, a cut record) raises
``FrameError``. After either error on the receiving side the rest of the frame is still
in the socket, so the caller must close the channel.

Waiting: a receive with no deadline first tries up to ``SPIN_TRIES`` non-blocking reads
of the first record (a stream's first bytes) before it blocks. A reply often comes
within tens of microseconds, and blocking costs far more than that here: the waiting CPU
goes idle, and on a virtual machine (the ``haltpoll`` idle driver of these 2-core VMs)
waking a halted CPU costs a trip through the hypervisor. The price is at most about 60
microseconds of CPU per receive that blocks anyway, so the budget adapts per channel by
what the spin achieved, never by how long the blocking wait took (behind a busy peer a
wait of a hundred microseconds looks short, and its receivers would never stop
spinning): a spin that waited for the message and caught it doubles it (up to
``SPIN_TRIES``), one that ran out halves it, and a message that was already there (the
kernel often runs the woken peer on the sender's CPU, so the reply is in when the sender
resumes) leaves it as it is. A channel at zero spins the full budget on every
``PROBE_EVERY``-th receive (a probe), so it finds out when its peer is quick again.
Spins that run out are what happens when the CPUs are all busy, and a spinning receiver
then takes the CPU its peer needs: the budget shrinks there. A receive with a deadline
does not spin: its socket is in timeout mode, where each try would wait.

A channel is not thread-safe: one sender and one receiver at a time, as with the
standard library's connections.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Sequence

from plait._core import fdpass, segment

__all__ = [
    "HEADER",
    "PLAIN",
    "INLINE",
    "SEGMENT",
    "FDS_NEXT",
    "RECORD_SIZE",
    "MAX_BUFFERS",
    "MAX_MESSAGE_SIZE",
    "SEGMENT_THRESHOLD",
    "SPIN_TRIES",
    "PROBE_EVERY",
    "SpinBudget",
    "MessageTooLarge",
    "FrameError",
    "Channel",
]

HEADER = struct.Struct("<BBHIQ")
PLAIN, INLINE, SEGMENT, FDS_NEXT = 1, 2, 3, 4
RECORD_SIZE = 64 * 1024  # well under the smallest default SO_SNDBUF (~200 KB)
MAX_BUFFERS = 512  # the table then fits in the first record; callers pickle in-band past it
MAX_MESSAGE_SIZE = 1 << 32  # default limit of payload + buffers, per message
SPIN_TRIES = 50  # non-blocking reads before a receive blocks (see "Waiting"): ~60 µs
PROBE_EVERY = 16  # a channel that stopped spinning spins the full budget this often
SEGMENT_THRESHOLD = 32 << 20  # below it two copies through the socket win
_IOV_MAX = 1024
_MSG_TRUNC = int(socket.MSG_TRUNC)
_MSG_DONTWAIT = int(socket.MSG_DONTWAIT)
_MSG_CTRUNC = int(socket.MSG_CTRUNC)
_pack_header = HEADER.pack
_unpack_header = HEADER.unpack_from
_FDS_NEXT = HEADER.pack(FDS_NEXT, 0, 0, 0, 0)
_SOCKET_BUFFER = 2 << 20
_MAX_RECORD = 1 << 20
_SCRATCH_MAX = 16 << 20


class SpinBudget:
    """The adaptive spin of "Waiting", for one waiter that spins before it blocks.

    ``tries()`` is how many non-blocking attempts to make this time (a probe of the full
    budget every ``PROBE_EVERY``-th wait while it is at zero); then ``caught(tries)``
    when an attempt after the first found the message, or ``missed()`` when none did.
    """

    __slots__ = ("spins", "unspun")

    def __init__(self) -> None:
        self.spins = SPIN_TRIES
        self.unspun = 0  # waits since the budget reached zero (for the probe)

    def tries(self) -> int:
        spins = self.spins
        if not spins:
            self.unspun += 1
            if self.unspun >= PROBE_EVERY:
                self.unspun = 0
                spins = SPIN_TRIES
        return spins

    def caught(self, spins: int) -> None:
        self.spins = min(SPIN_TRIES, 2 * spins + 1)

    def missed(self) -> None:
        self.spins //= 2  # in vain: the peer is slow, or the CPUs are all busy


class MessageTooLarge(ValueError):
    """A message is larger than the limit of the channel that sends or receives it."""

    def __init__(self, size: int, limit: int, side: str) -> None:
        super().__init__(
            f"message of {size} bytes exceeds the limit of {limit} bytes ({side} side)"
        )
        self.size = size
        self.limit = limit


class FrameError(OSError):
    """The peer sent bytes that are not a well-formed frame."""


class Channel:
    """Frames over one connected socket (which the channel owns).

    ``send`` blocks until the frame is handed to the kernel; ``recv`` blocks until a whole
    frame has arrived. Both honour the socket's timeout (``TimeoutError``).
    """

    def __init__(self, sock: socket.socket, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self.sock = sock
        self.max_message_size = max_message_size
        self.records = sock.type == socket.SOCK_SEQPACKET
        self.unix = sock.family == socket.AF_UNIX
        self._segments = self.unix and segment.available()
        self._ancillary = fdpass.ANCILLARY_SIZE if self.unix else 0
        # Inline payloads up to this size go out as one record / one sendmsg.
        self._small = RECORD_SIZE - HEADER.size
        self._chunk = bytearray(RECORD_SIZE if self.records else HEADER.size + 8 * MAX_BUFFERS)
        self._view = memoryview(self._chunk)
        self._first = [self._view]
        self._scratch = bytearray()  # reused for large plain payloads, up to _SCRATCH_MAX
        self._deadline: float | None = None
        self._spin = SpinBudget()  # adapted per channel, see "Waiting"
        # Bound methods cached: send/recv run once per message on the hot path.
        self._sendmsg = sock.sendmsg
        self._send = sock.send
        self._recvmsg_into = sock.recvmsg_into
        self._recv_into = sock.recv_into
        # Larger buffers for Unix sockets (TCP tunes its own, unless we set them).
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF) if self.unix else ():
            try:
                if sock.getsockopt(socket.SOL_SOCKET, option) < _SOCKET_BUFFER:
                    sock.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER)
            except OSError:
                pass  # the kernel caps or refuses it: the default works, only slower
        # Records after the first go straight into buffers of the frame's exact size, so
        # only the sender's buffer bounds them (the kernel refuses a record over it).
        sndbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        self._record = max(RECORD_SIZE, min(_MAX_RECORD, 1 << ((sndbuf // 2).bit_length() - 1)))

    def set_deadline(self, deadline: float | None) -> None:
        """Bound the socket operations that follow by ``deadline`` (``time.monotonic``).

        Until ``set_deadline(None)``, a ``send`` or ``recv`` that would run past it raises
        ``TimeoutError``, however the peer dribbles its bytes.
        """
        self._deadline = deadline
        self._refresh_timeout()

    def _refresh_timeout(self) -> None:
        if self._deadline is None:
            self.sock.settimeout(None)
            return
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the deadline passed")
        self.sock.settimeout(remaining)

    # -- sending --------------------------------------------------------------------

    def send(
        self, payload: bytes | memoryview, buffers: Sequence[memoryview] = (), fds: list[int] = ()
    ) -> None:
        """Send one frame: ``payload``, then ``buffers`` (contiguous byte views), with ``fds``.

        Blocks while the socket buffer is full. Raises ``MessageTooLarge`` before writing
        anything, ``ValueError`` for fds over a non-Unix socket or too many buffers,
        ``BrokenPipeError`` when the peer is gone.
        """
        size = len(payload)
        if not buffers and not fds and size <= self._small:
            if size > self.max_message_size:
                raise MessageTooLarge(size, self.max_message_size, "sending")
            # One small copy (header + payload) costs less than a two-part sendmsg.
            message = _pack_header(PLAIN, 0, 0, 0, size) + payload
            if self.records:
                self._send(message)
            else:
                self.sock.sendall(message)
            return
        self._send_general(payload, buffers, fds)

    def _send_general(self, payload, buffers, fds) -> None:
        lengths = [b.nbytes for b in buffers]
        total = len(payload) + sum(lengths)
        if total > self.max_message_size:
            raise MessageTooLarge(total, self.max_message_size, "sending")
        if len(buffers) > MAX_BUFFERS:
            raise ValueError(f"a frame carries at most {MAX_BUFFERS} buffers, not {len(buffers)}")
        if len(fds) >= fdpass.MAX_FDS:
            raise ValueError(f"a frame carries at most {fdpass.MAX_FDS - 1} fds")
        if fds and not self.unix:
            raise ValueError("file descriptors can only travel over a Unix socket")
        table = struct.pack(f"<{len(lengths)}Q", *lengths)
        if self._segments and total >= SEGMENT_THRESHOLD:
            seg = segment.create([memoryview(payload), *buffers])
            try:
                head = HEADER.pack(SEGMENT, 1 + len(fds), 0, len(lengths), len(payload)) + table
                self._write([memoryview(head)], fdpass.rights([seg, *fds]))
            finally:
                os.close(seg)
            return
        kind = INLINE if buffers else PLAIN
        head = HEADER.pack(kind, len(fds), 0, len(lengths), len(payload)) + table
        parts = [memoryview(head), memoryview(payload), *buffers]
        self._write(parts, fdpass.rights(fds) if fds else ())

    def _write(self, parts: list[memoryview], ancillary) -> None:
        sendmsg = self._sendmsg
        if not self.records:  # a stream: each sendmsg takes what fits, loop over the rest
            if ancillary:
                self.sock.sendall(_FDS_NEXT)
            while parts:
                batch, parts = _take(parts, 1 << 62)
                unsent = _skip(batch, sendmsg(batch, ancillary))
                ancillary = ()
                parts = unsent + parts
            return
        # The first record must fit the receiver's RECORD_SIZE buffer; the others land in
        # buffers of their exact size, so only our socket buffer bounds them.
        batch, parts = _take(parts, RECORD_SIZE)
        if ancillary:
            self._send(_FDS_NEXT)
        sendmsg(batch, ancillary)
        record = self._record
        while parts:
            batch, parts = _take(parts, record)
            sendmsg(batch)

    # -- receiving ------------------------------------------------------------------

    def recv(self, limit: int | None = None) -> tuple[memoryview, Sequence[memoryview], list[int]]:
        """Receive one frame: ``(payload, buffers, fds)``.

        Blocks until the whole frame has arrived. The ``payload`` of a frame without
        buffers may be a view of the channel's own memory, valid until the next ``recv``.
        The caller owns ``fds``. Raises ``EOFError`` when the peer closed (at the start
        of a frame or in its middle), ``MessageTooLarge`` when the frame exceeds ``limit``
        (default: the channel's ``max_message_size``), ``FrameError`` for a malformed frame.
        """
        view = self._view
        if self.records:
            # MSG_TRUNC: the kernel returns the record's real length, so a cut is seen.
            if self._deadline is None:
                got = self._recv_spinning(view, _MSG_TRUNC)
            else:
                self._refresh_timeout()
                got = self._recv_into(view, 0, _MSG_TRUNC)
            if HEADER.size <= got <= RECORD_SIZE:
                kind, nfds, _, count, size = _unpack_header(view)
                if kind == PLAIN and not nfds and not count and got == HEADER.size + size:
                    if size <= (self.max_message_size if limit is None else limit):
                        return view[HEADER.size : got], (), ()
        else:
            got = self._read_header(view)
        fds: list[int] = []
        try:
            if got == HEADER.size and view[: HEADER.size] == _FDS_NEXT:
                got, fds = self._recv_with_fds(view)
            return self._recv_general(got, fds, limit)
        except BaseException:
            fdpass.close_all(fds)
            raise

    def _recv_spinning(self, target: memoryview, flags: int) -> int:
        """``recv_into`` ``target`` (the first record, or a stream's first bytes),
        spinning before it blocks (see "Waiting")."""
        recv_into = self._recv_into
        spin = self._spin
        spins = spin.tries()
        for tried in range(spins):
            try:
                got = recv_into(target, 0, flags | _MSG_DONTWAIT)
            except BlockingIOError:
                continue
            if tried:  # the spin waited for the message, and caught it
                spin.caught(spins)
            return got
        spin.missed()
        return recv_into(target, 0, flags)

    def _recv_with_fds(self, view: memoryview) -> tuple[int, list[int]]:
        """After ``_FDS_NEXT``: receive the start of the frame and the fds beside it."""
        size = RECORD_SIZE if self.records else HEADER.size
        if self._deadline is not None:
            self._refresh_timeout()
        got, ancdata, flags, _ = self._recvmsg_into([view[:size]], self._ancillary, _MSG_TRUNC)
        fds = fdpass.fds_from_ancillary(ancdata)
        if flags & _MSG_CTRUNC:
            fdpass.close_all(fds)
            raise FrameError(f"the peer sent more than {fdpass.MAX_FDS} fds")
        if not self.records and 0 < got < HEADER.size:
            self._fill([view[got : HEADER.size]])
            got = HEADER.size
        return got, fds

    def _recv_general(self, got, fds, limit):
        view = self._view
        if got == 0 and not fds:
            raise EOFError("the peer closed the connection")
        if got > RECORD_SIZE:
            raise FrameError(f"the peer sent a first record of {got} bytes, over {RECORD_SIZE}")
        if got < HEADER.size:
            raise FrameError(f"the peer sent a record of {got} bytes, shorter than a header")
        kind, nfds, zero, count, size = HEADER.unpack_from(view)
        if kind not in (PLAIN, INLINE, SEGMENT) or zero:
            raise FrameError(f"the peer sent a frame of unknown kind {kind}/{zero}")
        if nfds != len(fds) or (kind == SEGMENT and not nfds):
            raise FrameError(f"the frame announced {nfds} fds and {len(fds)} arrived")
        if count > MAX_BUFFERS or (kind == PLAIN and count):
            raise FrameError(f"the frame announced {count} buffers")
        head = HEADER.size + 8 * count
        if count:
            if self.records and got < head:
                raise FrameError("the first record of the frame does not hold its table")
            if not self.records:
                self._fill([view[HEADER.size : head]])
                got = head
            lengths = list(struct.unpack_from(f"<{count}Q", view, HEADER.size))
        else:
            lengths = []
        total = size + sum(lengths)
        limit = self.max_message_size if limit is None else limit
        if total > limit:
            raise MessageTooLarge(total, limit, "receiving")
        if kind == SEGMENT:
            if got != head:
                raise FrameError("a segment frame carries bytes beside its table")
            seg = fds.pop(0)
            try:
                views = segment.map_views(seg, [size, *lengths])
            except OSError as exc:
                raise FrameError(str(exc)) from exc
            finally:
                os.close(seg)
            return views[0], views[1:], fds
        if count or size > _SCRATCH_MAX:
            targets = [memoryview(bytearray(n)) for n in (size, *lengths)]
        else:  # a payload only: the caller consumes it before the next recv
            if len(self._scratch) < size:
                self._scratch = bytearray(size)
            targets = [memoryview(self._scratch)[:size]]
        rest = _scatter(view[head:got], targets)
        if rest is None:
            raise FrameError("the first record holds more than the frame")
        if rest:
            self._fill(rest)
        return targets[0], targets[1:], fds

    def _read_header(self, view: memoryview) -> int:
        """Read exactly one header from a stream; 0 if the peer closed before it."""
        if self._deadline is not None:
            self._refresh_timeout()
            first = self.sock.recv_into(view[: HEADER.size])
        else:
            first = self._recv_spinning(view[: HEADER.size], 0)
        if first and first < HEADER.size:
            self._fill([view[first : HEADER.size]])
        return HEADER.size if first else 0

    def _fill(self, targets: list[memoryview]) -> None:
        """Receive exactly enough bytes to fill ``targets``, in order."""
        recvmsg_into = self._recvmsg_into
        targets = [t for t in targets if t.nbytes]
        while targets:
            if self._deadline is not None:
                self._refresh_timeout()
            got, _, flags, _ = recvmsg_into(targets[:_IOV_MAX])
            if not got:
                raise EOFError("the peer closed the connection in the middle of a message")
            if flags & (_MSG_TRUNC | _MSG_CTRUNC):
                raise FrameError("the peer sent a record that overruns its frame, or fds")
            targets = _skip(targets, got)


def _take(parts: list[memoryview], limit: int) -> tuple[list[memoryview], list[memoryview]]:
    """Split ``parts`` into a batch of at most ``limit`` bytes (and ``_IOV_MAX`` parts)."""
    batch = []
    room = limit
    for i, part in enumerate(parts):
        n = part.nbytes
        if n > room or len(batch) == _IOV_MAX:
            if room and len(batch) < _IOV_MAX:
                batch.append(part[:room])
                return batch, [part[room:], *parts[i + 1 :]]
            return batch, parts[i:]
        batch.append(part)
        room -= n
    return batch, []


def _skip(parts: list[memoryview], n: int) -> list[memoryview]:
    """What remains of ``parts`` after their first ``n`` bytes."""
    for i, part in enumerate(parts):
        size = part.nbytes
        if n < size:
            return [part[n:], *parts[i + 1 :]]
        n -= size
    return []


def _scatter(data: memoryview, targets: list[memoryview]) -> list[memoryview] | None:
    """Copy ``data`` into the start of ``targets``; return the unfilled rest (None: overflow)."""
    pos = 0
    end = data.nbytes
    for i, target in enumerate(targets):
        if pos == end:
            return targets[i:]
        n = min(target.nbytes, end - pos)
        target[:n] = data[pos : pos + n]
        pos += n
        if n < target.nbytes:
            return [target[n:], *targets[i + 1 :]]
    return [] if pos == end else None
