"""Echo servers side by side: plait.coro beside asyncio, uvloop, trio, curio, selectors.

Every server runs in its own process (started once, all idle while another is measured)
and answers ping-pong: a client sends a message, waits for all of it to come back, sends
the next. The same client drives every server, in a process of its own per call, pinned
to one core while the servers are pinned to the other: N connections on one epoll, each
with one message in flight. Per call it warms up for ``WARMUP`` s, then counts completed
round trips for ``DURATION`` s and measures its own CPU time.

The client is ``echo_client.c``, compiled with ``cc -O2`` into a temporary directory at
start (if no compiler works, the Python client of this file stands in, with a printed
note; ``--client python`` asks for it). The Python client needed ~95% of its core and
so capped the fast servers. The C client does the same work in 65-90% of its core (less
for slower servers), and every server then runs at ~100% of its own: the rate measures
servers. It polls without blocking for up to ``--spin-us`` (200 µs) before it blocks: a
client that blocks at once lets its core go idle, and on a quiet VM (the ``haltpoll``
idle driver) each reply must then wake it through the hypervisor, inside the server's
``send``. On the shared, busy machine the spin made no difference to the servers (same
ratios with ``--spin-us 0``), since a busy core does not halt.

    python benchmarks/bench_echo.py            # the four cases, 3 rounds
    python benchmarks/bench_echo.py --quick    # 64 B / 100 connections only
    python benchmarks/bench_echo.py --cases 64x1000 --servers "plait streams,curio"

"plait streams (pure Python)" is the same server with the C core of ``plait.coro``
(``plait._core._coro``) switched off: the path of a build without it, and what the core
saves, within one run.

The last server, "C epoll" (``echo_server.c``, compiled beside the client), is not a
competitor but the floor: the same system calls per request as the bare ``selectors``
server, with no Python at all. Its CPU per request is what the kernel's loopback TCP path
costs; what any other server needs above it is its own. (Measured on the 2-core VM,
64 B, 100 connections: C 5.1 µs, selectors 6.1, plait streams 7.3, asyncio streams 10.6:
twice asyncio streams' rate is within 0.2 µs of the C server's.)

Cases: 64 B and 16 KiB messages, 100 and 1,000 connections. Figures: requests per second
(the harness table), then the server's CPU time per request, read from /proc before and
after each client run (it includes accepting the connections): on a shared, busy machine
that second figure moves much less than the rate, and its "plait x" is peer / plait.
Beside it: the server's CPU use during the client run (~100%: the server is the
bottleneck, as it should be), the client's CPU use without its empty polls (~100%:
client-bound) and, after "+ spin", what its empty polls took.

What the choices of ``plait.coro`` were measured to save (64 B, 100 connections, server
CPU per request, the choice against its alternative in one run, on the 2-core VM):
- epoll registrations kept across waits: 7.8 µs, against 12.8 µs when each wait
  registers and each wake-up unregisters;
- all events of a ``poll()`` handled in one batch: 7.9-8.2 µs, against 9.1-11.0 µs with
  one event per poll;
- a read after a short (draining) read waits first: 8.6 µs, against 9.5 µs when it tries
  the system call first (the failed call and its exception were ~1/10 of a round trip);
- a bare ``selectors`` echo loop on the same machine: 6.7-6.8 µs.
Where a request's time went then (streams, the C client keeping the server's core at
100%): 7.5 µs of server CPU at 100 connections, 10 µs at 1,000; ``strace -c``: one
``recv``, one ``send``, a share of one ``epoll_wait``; ``perf``: the system calls ~75% of
it (the loopback TCP path); the bare ``selectors`` loop 6.2 and 7.2 µs; what is left in
Python (the kernel's loop, one ``send()`` into the handler and one trap back, ``recv`` and
``sendall``) ~1.3 µs at 100 connections, growing with cache misses at 1,000. ``Socket``
forwards the standard socket's attributes by properties, not ``__getattr__``: with
``__getattr__`` every attribute read took 24 ns instead of 6 ns, ~8 reads per request.

The C core (``plait._core._coro``), step by step. On the shared machine (load 4-9 on 2
cores) the servers got 6-30% of a core and CPU per request moved by 30% between runs,
so each step was counted in instructions instead: user-space instructions per round
trip (valgrind ``cachegrind``, difference of a 20- and a 120-round-trip run) of an
in-process echo, 100 socketpairs with both ends in one kernel, so two task steps,
four socket calls and a share of the polls per round trip:
- pure Python (the code of the kernel before the core): 32.9k;
- ``recv``/``sendall`` as C operations (no coroutine, no ``read_wait`` generator, no
  ``threading.local`` read, per call): 15.5k;
- the readiness step (``poll``) in C: 13.0k;
- the run step (``run_ready``) in C: 12.5k (bare sockets without the stream: 11.3k);
- the stream's ``read``/``write`` in C, a read into a scratch buffer instead of a
  64 KiB bytes object shrunk per call (malloc, realloc and consolidation were 1.8k), a
  Task's slots at their offsets instead of getattr/setattr (2k): 7.1k; ``sendall`` of
  bytes without a buffer export: 6.8k;
- operations outside the cyclic GC, ``Kernel.current`` set in the kernel's dict:
  (server below) 3.6k -> 3.3k per request.
The same count in the servers of this file (64 B, 100 connections, the C client; the
server under callgrind, its counters zeroed after a warm-up run), per request: C epoll
50 instructions (the rest of its 5-6 µs is the kernel's TCP path), uvloop protocols
3.4k, plait streams 21.1k before the core, 18.9k on its pure-Python path, 3.3k with it
(plait sockets 3.6k before the last step); at 1,000 connections: C 50, uvloop 3.6k,
plait 19.2k before, 3.9k with the core; 16 KiB at 100 connections: C 50, uvloop 20.4k,
plait 16.1k before, 20.6k with every read copied out of the scratch buffer, 4.3k once a
read after a large one skips it. ``strace -c``: plait streams and the C server make the
same system calls per request (one ``recvfrom``, one ``sendto``, 0.013-0.015
``epoll_wait``): all that plait adds is user space. What is left there (64 B): the handler's frame
~0.8k, the C run and readiness steps and the operations ~0.6k, object allocation and
freeing ~0.3k, ``await`` of an operation and ``send()`` into the handler ~0.2k, dict
lookups (the fd table twice, ``Kernel.current``) ~0.3k. CPU time per round trip of
the in-process echo (median of 11, loaded): pure Python 10.6 µs, C operations 8.1 µs,
+ readiness step 8.0 µs, + run step 7.4 µs. This file with the core, 5 rounds, load
~1-2 (server CPU per request, median; plait streams / uvloop protocols / C epoll /
plait's pure-Python path): 64 B x 100: 6.1 / 6.6 / 5.8 / 8.2 µs; 64 B x 1,000: 13.2 /
11.7 / 9.8 / 15.3 µs; 16 KiB x 100: 10.0 / 10.9 / 8.2 / 12.4 µs; 16 KiB x 1,000: 14.9 /
14.6 / 10.7 / 18.3 µs. At 1,000 connections the gap to the C server is no longer
instructions (3.9k against 3.3k at 100) but the cache misses of a task, its coroutine,
its socket and stream per request.

The cache misses at 1,000 connections, then (16 KiB; ``perf record`` of the server for
where the time goes, callgrind's cache simulation with a 1 MiB last level for counts,
and server CPU per request over 12-20 interleaved rounds for each step):
- plait's own user space was ~2.2 µs of ~12 µs per request, uvloop's ~1.6 µs;
  callgrind: 12.8 last-level read misses per request for plait against 0.2 for uvloop
  protocols at 64 B x 1,000: uvloop's per-connection state fits a 1 MiB cache, plait's
  (task, coroutine and frame, socket, stream, the fd table's entry) does not;
- one load in glibc's ``free`` was 2.4% of the server's time: each handler keeps its
  last message until its next read, and a 64 KiB bytes object shrunk to 16 KiB left a
  free remainder beside it that the free had to merge with, in cold memory. A large read
  now allocates the last large read's size plus one byte: 4,282 -> 3,622 instructions
  and 28.5 -> 22.2 first-level read misses per request (callgrind);
- the fd ints are interned and looked up with their known hash; Task's hot slots come
  first;
- the run step prefetches the next task's coroutine and frame and the task after it: a
  peek at the deque increfs the task, the very miss to hide (``deque_item`` was 0.11 µs
  per request), so it takes them off a step early: 3.8% less CPU than the peek
  (interquartile 2.3-5.6%), 2.5-3.5% less than no prefetch;
- tried and dropped: prefetching the socket and coroutine in the readiness step (2%
  worse), the handler calling ``stream.read`` instead of bound methods (no difference).
  With ``del data`` after the write (the message freed while hot, as a protocol's
  ``data_received`` does) the same server needed 5% less CPU: the rest of the gap at
  16 KiB x 1,000 is the messages the handlers keep;
- ``serve`` ran each handler inside a wrapper coroutine of its own (which closed the
  client and logged a failure): every resumption went through a second coroutine and
  frame. The handler's coroutine is now the task's own, and the kernel's ``task_done``
  hook of the server does the rest. callgrind per request, 64 B x 1,000: last-level
  misses 22.6 -> 13.5, instructions 3,112 -> 2,871; with the readiness step borrowing
  the fd int too (its reference wrote to a cold line): 11.9 misses at 64 B x 1,000, 12.1
  at 16 KiB x 1,000 (21.9 before both). Server CPU, 12 interleaved rounds: 4.5% less at
  64 B x 1,000 (interquartile 0-17%), no difference to be seen at 16 KiB x 1,000, where
  the kernel's side of the request moved by 15% from run to run;
- the stall in ``free`` (above) was one load: glibc reads the size word of the chunk
  after the next one, to know whether the next one is in use, and that is another
  connection's message, out of the cache. A large read now prefetches it (and the next
  chunk's size word) while its system call runs: the neighbours of a message are
  messages of its size, so the address is known. ``_int_free`` went from 2-3% of the
  server's samples (``perf``, 16 KiB x 1,000) to 0.1%. An earlier try of this had shown
  nothing because gcc had dropped it: it takes a function whose only effect is a
  prefetch for const and removes its calls (at -O2 every one; at -O3 those it does not
  inline), so the prefetch helpers are now inlined by force. Which of the earlier
  prefetch experiments were compiled away is not known;
- the run step prefetches the socket the next task last waited to read (a table of
  addresses that the inline read wait fills): ``op_am_send`` 2.9/2.7% -> 1.3-2.2% of the
  server's samples in ``perf``, the step's functions together ~1% less; 14 interleaved
  rounds of server CPU on a quiet machine showed no difference either way (+-5%). Tried
  and dropped: the same table holding the addresses of the objects of the coroutine's
  first six locals (the handler's stream, bound methods and last message), prefetched
  with the socket: +3.6% and -2.3% in two runs at 16 KiB x 1,000, nothing at 64 B. The
  full run after these (5 rounds, load ~1.5, plait streams x uvloop protocols): 1.10 at
  64 B x 100, 0.87 at 64 B x 1,000 (range 0.76-1.44), 1.14 at 16 KiB x 100, 0.96 at 16
  KiB x 1,000 (0.82-1.12); 0.94 x the C server at 64 B x 100. A run of only the
  1,000-connection cases, 9 rounds: 1.00 and 1.00. At 1,000 connections plait streams
  and uvloop protocols are level, within the machine's noise.

The same serving code on a quiet machine, the next morning (no other session, load 0.3
to 1.9, the benchmark's own), plait streams x uvloop protocols at 64 B x 100, 64 B x
1,000, 16 KiB x 100, 16 KiB x 1,000: three full runs, 1.00 / 1.00 / 1.12 / 1.03 and
0.97 / 0.98 / 1.15 / 0.96 (5 rounds each) and 1.03 / 0.98 / 1.10 / 0.97 (9 rounds, the
recorded one); x the C server at 64 B x 100: 0.92, 0.92, 0.92; a run of the two
1,000-connection cases alone: 1.05 and 1.16. At 100 connections plait streams are level
at 64 B and ahead at 16 KiB; at 1,000 connections level (0.96-1.05, once 1.16), not
reliably ahead. The per-round ranges span 0.75-1.6 and swing both ways. What the server
itself spends moves less, and there plait is ahead in every case: ``perf`` of one client
run each, user space per request (plait / uvloop protocols): 0.61 / 0.71 µs at 64 B x
100, 0.68 / 0.99 at 64 B x 1,000, 0.72 / 0.90 at 16 KiB x 100, 1.53 / 1.62 at 16 KiB x
1,000; the rest, 5-9.5 µs, is the kernel's TCP path, the same calls for both and moving
by up to 25% between runs of one server. At 64 B the rate is also the client's: with
plait streams it needed 97% of its core (its empty polls 2%), with uvloop protocols 89%
(11% waiting), so a faster server cannot show its whole lead there. Three runs of each at
64 B x 100 back to back: 178k requests/s for plait streams, 131k-163k for uvloop
protocols, 171k-207k for the C server, and neither Python server ever blocked in
``epoll_wait`` (no voluntary context switch during a run).

The bridged call. ``from_asyncio`` ran each call as an asyncio task of its own; in
asyncio alone, 100 tasks made per batch, each awaiting one ``sleep(0)``, cost 3.2 µs per
call, and 100 long-lived tasks each handed its next call through a future 2.0 µs. The
calls of one plait task now run in one long-lived asyncio task (its twin, see
``plait.coro.aio``). 9 interleaved rounds, old against new server: 1.10x the requests
per second (interquartile 1.08-1.15), server CPU 13.9 -> 12.1 µs per request. Against
asyncio making the call natively the bridged server stays level or a little behind
(0.92 and 0.97 in two full runs, 0.96 in 15 interleaved rounds, interquartile 0.82-1.04): what is
left of the 5-6 µs a bridged call costs above a native one is Python on both sides (the
call's record, the trap and the wake-up in the kernel; the hand-over, the twin's step
and the answer on the loop), while the thread switches are shared by the ~40 calls of a
batch (one involuntary switch of the kernel's thread per ~38 requests). The twin has a
price where a plait task makes a single call: it is made, waits idle, and is ended by a
message when its task ends, one step and one done-callback more than a task per call.
100 plait tasks at a time, each making one call (``sleep(0)``), 6 alternating runs:
16.6 µs per task (16.3-20.4) against 11.9 (11.0-12.9) with a task per call. With the
~1.8 µs a twin saves on each further call, it pays from about the fourth call of a task.
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import resource
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from harness import Bench

WARMUP = 0.3
DURATION = 1.5
BACKLOG = 2048
READ_SIZE = 65536
SERVERS = [
    "plait streams",
    "plait sockets",
    "plait streams (pure Python)",
    "asyncio streams",
    "asyncio protocols",
    "uvloop streams",
    "uvloop protocols",
    "trio",
    "curio",
    "selectors",
    "C epoll",
]
# The C reference server (echo_server.c), built by the driver; the variable tells the
# `serve` subprocess where.
_C_SERVER = "BENCH_ECHO_C_SERVER"


# -- the servers (each runs in its own process: `bench_echo.py serve NAME`) ------------


def _listen() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(BACKLOG)
    return sock


def serve_plait(use_streams: bool, c_core: bool, sock: socket.socket) -> None:
    from plait import coro

    if not c_core:  # the pure-Python path, as where plait._core._coro is not built
        from plait._core import _coro

        _coro.set_enabled(False)

    async def echo_stream(client, addr):
        stream = client.as_stream()
        read, write = stream.read, stream.write
        while True:
            data = await read(READ_SIZE)
            if not data:
                break
            await write(data)

    async def echo_socket(client, addr):
        recv, sendall = client.recv, client.sendall
        while True:
            data = await recv(READ_SIZE)
            if not data:
                break
            await sendall(data)

    coro.run(coro.serve, coro.Socket(sock), echo_stream if use_streams else echo_socket)


def serve_asyncio(loop_kind: str, protocols: bool, sock: socket.socket) -> None:
    import asyncio

    if loop_kind == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

    async def echo_stream(reader, writer):
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        writer.close()

    async def main():
        loop = asyncio.get_running_loop()
        if protocols:
            server = await loop.create_server(Echo, sock=sock, backlog=BACKLOG)
        else:
            server = await asyncio.start_server(echo_stream, sock=sock, backlog=BACKLOG)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def serve_trio(sock: socket.socket) -> None:
    import trio

    async def echo(stream):
        try:
            while True:
                data = await stream.receive_some(READ_SIZE)
                if not data:
                    break
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass

    async def main():
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        await trio.serve_listeners(echo, [listener])

    trio.run(main)


def serve_curio(sock: socket.socket) -> None:
    import curio
    from curio.io import Socket as CurioSocket

    async def echo(client, addr):
        while True:
            data = await client.recv(READ_SIZE)
            if not data:
                break
            await client.sendall(data)

    curio.run(curio.network.run_server, CurioSocket(sock), echo)


def serve_selectors(sock: socket.socket) -> None:
    import selectors

    sel = selectors.DefaultSelector()
    sock.setblocking(False)
    sel.register(sock, selectors.EVENT_READ, None)
    pending: dict[socket.socket, bytes] = {}
    while True:
        for key, events in sel.select():
            s = key.fileobj
            if s is sock:
                try:
                    client, _ = sock.accept()
                except BlockingIOError:
                    continue
                client.setblocking(False)
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sel.register(client, selectors.EVENT_READ, None)
                continue
            if events & selectors.EVENT_WRITE:
                rest = pending.pop(s)
                n = s.send(rest)
                if n < len(rest):
                    pending[s] = rest[n:]
                else:
                    sel.modify(s, selectors.EVENT_READ)
                continue
            try:
                data = s.recv(READ_SIZE)
            except (BlockingIOError, ConnectionError):
                data = None if not isinstance(sys.exc_info()[1], ConnectionError) else b""
            if data is None:
                continue
            if not data:
                sel.unregister(s)
                s.close()
                continue
            try:
                n = s.send(data)
            except BlockingIOError:
                n = 0
            if n < len(data):
                pending[s] = data[n:]
                sel.modify(s, selectors.EVENT_WRITE)


# The bridged case: a handler that awaits one asyncio call per request, through
# ``coro.from_asyncio`` on a plait server and directly on an asyncio server, each beside
# the same server without the call; the differences are the cost of the call.
BRIDGE_SERVERS = [
    "plait streams + asyncio call",
    "plait streams",
    "asyncio streams + asyncio call",
    "asyncio streams",
]


def serve_with_asyncio_call(name: str, sock: socket.socket) -> None:
    """An echo server whose handler awaits ``lookup`` (one asyncio call) per request."""
    import asyncio

    async def lookup(data: bytes) -> bytes:  # a driver's call: one turn of the asyncio loop
        await asyncio.sleep(0)
        return data

    if name.startswith("plait"):
        from plait import coro

        async def echo_bridged(client, addr):
            stream = client.as_stream()
            read, write, from_asyncio = stream.read, stream.write, coro.from_asyncio
            while True:
                data = await read(READ_SIZE)
                if not data:
                    break
                await write(await from_asyncio(lookup(data)))

        coro.run(coro.serve, coro.Socket(sock), echo_bridged)
        return

    async def echo_native(reader, writer):
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                break
            writer.write(await lookup(data))
            await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(echo_native, sock=sock, backlog=BACKLOG)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def run_bridge_case(bench: Bench, command: tuple[list[str], list[str]]) -> None:
    """The bridged case at 64 B, 100 connections; prints what one asyncio call costs."""
    size, conns = 64, 100
    servers = start_servers(BRIDGE_SERVERS)
    try:
        for proc, port in servers.values():
            run_client(command, proc, port, conns, size, collections.defaultdict(list))
        notes = {name: {"client": [], "server": [], "busy": [], "spin": []} for name in servers}
        variants = {
            name: functools.partial(run_client, command, proc, port, conns, size, notes[name])
            for name, (proc, port) in servers.items()
        }
        bench.case(
            f"echo {size} B, {conns} connections, one asyncio call per request",
            variants,
            unit="req/s",
        )
        print_cpu_table(notes)
        cpu = {name: statistics.median(note["server"]) for name, note in notes.items()}
        bridged = cpu["plait streams + asyncio call"] - cpu["plait streams"]
        native = cpu["asyncio streams + asyncio call"] - cpu["asyncio streams"]
        print(
            "  cost of one asyncio call per request (server CPU): through the bridge "
            f"{bridged:.1f} µs, native in asyncio {native:.1f} µs"
        )
    finally:
        for proc, _ in servers.values():
            proc.kill()
            proc.wait()


def pin(role: str) -> None:
    """Client on the first usable core, servers on the last: no migrations, no sharing."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) > 1:
        os.sched_setaffinity(0, {cores[0] if role == "client" else cores[-1]})


def serve(name: str) -> None:
    pin("server")
    sock = _listen()
    print(sock.getsockname()[1], flush=True)
    if name == "C epoll":  # the affinity and the listening socket go on through exec
        binary = os.environ[_C_SERVER]
        os.set_inheritable(sock.fileno(), True)
        os.execv(binary, [binary, str(sock.fileno())])
    if name.endswith("+ asyncio call"):
        serve_with_asyncio_call(name, sock)
    elif name.startswith("plait"):
        serve_plait(name.startswith("plait streams"), not name.endswith("(pure Python)"), sock)
    elif name.startswith(("asyncio", "uvloop")):
        kind, style = name.split()
        serve_asyncio(kind, style == "protocols", sock)
    elif name == "trio":
        serve_trio(sock)
    elif name == "curio":
        serve_curio(sock)
    else:
        serve_selectors(sock)


# -- the client (`bench_echo.py client PORT CONNECTIONS SIZE`) --------------------------


def client(port: int, connections: int, size: int, warmup: float, duration: float) -> None:
    """Ping-pong on ``connections`` sockets; print 'round_trips cpu_seconds wall_seconds'."""
    pin("client")
    message = os.urandom(size)
    socks = []
    for _ in range(connections):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks.append(s)
    ep = select.epoll()
    by_fd = {}
    for s in socks:
        ep.register(s.fileno(), select.EPOLLIN)
        by_fd[s.fileno()] = [s, 0]  # socket, bytes of the reply received so far
        s.send(message)
    done = 0
    start = time.perf_counter()
    measure_from = start + warmup
    stop = measure_from + duration
    counted = None
    cpu0 = None
    poll = ep.poll
    while True:
        now = time.perf_counter()
        if counted is None and now >= measure_from:
            counted, cpu0 = done, os.times()
            t0 = now
        if now >= stop:
            break
        for fd, _ in poll(0.1):
            entry = by_fd[fd]
            s = entry[0]
            try:
                data = s.recv(READ_SIZE)
            except BlockingIOError:
                continue
            if not data:
                raise ConnectionError("the server closed a connection")
            entry[1] += len(data)
            if entry[1] >= size:
                entry[1] = 0
                done += 1
                s.setblocking(True)
                s.sendall(message)
                s.setblocking(False)
    cpu1 = os.times()
    wall = time.perf_counter() - t0
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    # end politely: take the reply still in flight on each connection, then close
    for s, received in by_fd.values():
        s.setblocking(True)
        s.settimeout(10)
        while received < size:
            chunk = s.recv(READ_SIZE)
            if not chunk:
                break
            received += len(chunk)
        s.close()
    ep.close()
    print(done - counted, cpu, wall, done, flush=True)


# -- the driver --------------------------------------------------------------------------


def start_servers(names: list[str]) -> dict[str, tuple[subprocess.Popen, int]]:
    servers = {}
    for name in names:
        proc = subprocess.Popen(
            [sys.executable, __file__, "serve", name], stdout=subprocess.PIPE, text=True
        )
        servers[name] = (proc, int(proc.stdout.readline()))
    return servers


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (from /proc)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def build_c(directory: str, name: str) -> list[str] | None:
    """Compile ``name``.c into ``directory``; its command, or None if no compiler."""
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.c")
    binary = os.path.join(directory, name)
    for compiler in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if compiler and shutil.which(compiler):
            done = subprocess.run(
                [compiler, "-O2", "-o", binary, source], capture_output=True, text=True
            )
            if done.returncode == 0:
                return [binary]
            print(f"# {compiler} could not build {source}: {done.stderr.strip()}")
    return None


def run_client(
    command: tuple[list[str], list[str]],
    server: subprocess.Popen,
    port: int,
    connections: int,
    size: int,
    notes: dict,
) -> float:
    """One measured client run against ``port``; returns round trips per second.

    ``command`` is what goes before and after the client's common arguments.
    """
    before = cpu_seconds(server.pid)
    started = time.perf_counter()
    out = subprocess.run(
        [
            *command[0],
            str(port),
            str(connections),
            str(size),
            str(WARMUP),
            str(DURATION),
            *command[1],
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    server_cpu = cpu_seconds(server.pid) - before
    elapsed = time.perf_counter() - started
    trips, cpu, wall, total = int(out[0]), float(out[1]), float(out[2]), int(out[3])
    spun = float(out[4]) if len(out) > 4 else 0.0  # the C client's empty polls
    notes["client"].append((cpu - spun) / wall)
    notes["spin"].append(spun / wall)
    notes["server"].append(server_cpu / total * 1e6)
    notes["busy"].append(server_cpu / elapsed)
    return trips / wall


def print_cpu_table(notes: dict[str, dict[str, list[float]]]) -> None:
    """Server CPU per request (robust to a busy machine), and the CPU use of the server
    (its one core: ~100% = the server is the bottleneck) and of the client (~100% =
    client-bound)."""
    first = next(iter(notes))
    base = notes[first]["server"]
    print(
        f"  {'server CPU per request':<28}{'median':>12}{'plait x':>10}{'range':>16}"
        f"{'server CPU':>12}{'client CPU':>12}{'+ spin':>8}"
    )
    for name, note in notes.items():
        if not note["server"]:
            continue
        ratios = [peer / mine for mine, peer in zip(base, note["server"], strict=False) if mine > 0]
        ratio = "" if name == first or not ratios else f"{statistics.median(ratios):.2f}"
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratio else ""
        print(
            f"  {name:<28}{statistics.median(note['server']):>9.1f} µs{ratio:>10}{spread:>16}"
            f"{statistics.median(note['busy']) * 100:>11.0f}%"
            f"{statistics.median(note['client']) * 100:>11.0f}%"
            f"{statistics.median(note['spin']) * 100:>7.0f}%"
        )
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="64 B, 100 connections only")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--client",
        choices=["c", "python"],
        default="c",
        help="the load generator: echo_client.c (default; Python if no compiler) or Python",
    )
    parser.add_argument(
        "--spin-us",
        type=float,
        default=200.0,
        help="the C client polls without blocking this long before it blocks (0: never)",
    )
    parser.add_argument("--servers", help="comma-separated subset of: " + ", ".join(SERVERS))
    parser.add_argument(
        "--bridge",
        choices=["also", "only", "no"],
        default="also",
        help="the case of a handler that awaits an asyncio call per request (plait through "
        "coro.from_asyncio, asyncio natively): before the others, alone, or not at all",
    )
    parser.add_argument("--cases", help="comma-separated SIZExCONNECTIONS, e.g. 64x100,64x1000")
    args = parser.parse_args()
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (min(16384, resource.getrlimit(resource.RLIMIT_NOFILE)[1]),) * 2
    )
    names = SERVERS
    if args.servers:
        names = [name.strip() for name in args.servers.split(",")]
        unknown = sorted(set(names) - set(SERVERS))
        if unknown:
            parser.error(f"unknown servers {unknown}; choose from {SERVERS}")
    cases = [(64, 100)] if args.quick else [(64, 100), (64, 1000), (16384, 100), (16384, 1000)]
    if args.cases:
        try:
            cases = [tuple(map(int, case.split("x"))) for case in args.cases.split(",")]
        except ValueError:
            parser.error(f"--cases wants SIZExCONNECTIONS,..., not {args.cases!r}")
    bench = Bench(
        "echo servers: ping-pong round trips per second, one client process",
        packages=["uvloop", "trio", "curio"],
        rounds=args.rounds,
        cap=30.0,
    )
    with tempfile.TemporaryDirectory(prefix="bench_echo_") as directory:
        if "C epoll" in names:
            server = build_c(directory, "echo_server")
            if server is None:
                print("# NOTE: no C compiler built echo_server.c; the C epoll server is left out")
                names = [name for name in names if name != "C epoll"]
            else:
                os.environ[_C_SERVER] = server[0]
        binary = build_c(directory, "echo_client") if args.client == "c" else None
        if binary is None:
            if args.client == "c":
                print("# NOTE: no C compiler built echo_client.c; the Python client is used")
            command = ([sys.executable, os.path.abspath(__file__), "client"], [])
            kind = "Python (this file)"
        else:
            command = (binary, [str(args.spin_us)])
            kind = f"C (echo_client.c, cc -O2; spins {args.spin_us:g} µs before it blocks)"
        print(
            f"# client: {kind}, one process, epoll, {WARMUP:g} s warm-up then "
            f"{DURATION:g} s counted"
        )
        if args.bridge != "no":
            run_bridge_case(bench, command)
        if args.bridge != "only":
            run_cases(bench, names, cases, command)
        else:
            bench.close()


def run_cases(
    bench: Bench,
    names: list[str],
    cases: list[tuple[int, int]],
    command: tuple[list[str], list[str]],
) -> None:
    """Start the servers, measure every case against all of them, stop the servers.

    Each server first answers one unmeasured client run of the first case: a server's
    first run was its slowest (asyncio's ran at 40% of its later rate), and users' servers
    are warm.
    """
    servers = start_servers(names)
    try:
        size, conns = cases[0]
        print(f"# each server warmed first by one unmeasured run: {size} B, {conns} connections")
        for proc, port in servers.values():
            run_client(command, proc, port, conns, size, collections.defaultdict(list))
        for size, conns in cases:
            notes = {name: {"client": [], "server": [], "busy": [], "spin": []} for name in names}
            variants = {
                name: functools.partial(run_client, command, proc, port, conns, size, notes[name])
                for name, (proc, port) in servers.items()
            }
            bench.case(f"echo {size} B, {conns} connections", variants, unit="req/s")
            print_cpu_table(notes)
    finally:
        for proc, _ in servers.values():
            proc.kill()
            proc.wait()
        bench.close()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2])
    elif len(sys.argv) > 1 and sys.argv[1] == "client":
        client(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), *map(float, sys.argv[5:7]))
    else:
        main()
