"""Sockets and streams at their edges: closed after a short read, TLS sockets that would
talk plaintext, a server out of fds, a full Unix backlog, zero and negative sizes, typed
buffers. Each scenario does what a user does on real sockets and, where the standard
library has the same call (``socket``, asyncio streams), checks that plait answers alike.
"""

from __future__ import annotations

import array
import asyncio
import errno
import functools
import gc
import logging
import os
import resource
import socket
import ssl
import subprocess
import sys
import warnings

import pytest

from plait import coro
from plait.coro import traps
from tests.support import run_in_child

pytestmark = [pytest.mark.usefixtures("no_leaks", "core"), pytest.mark.timeout(30)]


async def short_read_pair(name: str) -> tuple[coro.Socket, coro.Socket]:
    """A connected pair whose second socket's last read was short (it is drained)."""
    a, b = socket.socketpair()
    sa, sb = coro.Socket(a), coro.Socket(b, name=name)
    await sa.sendall(b"x")
    assert await sb.recv(100) == b"x"
    return sa, sb


def test_a_read_of_a_socket_closed_after_a_short_read_raises_and_the_kernel_goes_on():
    async def bystander():
        await coro.sleep(0.05)
        return "still running"

    async def main():
        other = await coro.spawn(bystander)
        reads = {
            "recv": lambda sock: sock.recv(100),
            "stream read": lambda sock: sock.as_stream().read(100),
            "stream readline": lambda sock: sock.as_stream().readline(),
        }
        for what, read in reads.items():
            sa, sb = await short_read_pair(name=f"conn for {what}")
            await sb.close()
            with pytest.raises(coro.ClosedResourceError, match=f"conn for {what}") as info:
                async with coro.timeout_after(5):
                    await read(sb)
            assert info.value.errno == errno.EBADF  # what socket.recv says on a closed socket
            await sa.close()
        return await other.join()

    assert coro.run(main) == "still running"


def test_an_ssl_socket_that_would_talk_plaintext_is_refused():
    """An unconnected client SSLSocket loses its TLS on a non-blocking connect, and a
    listening one accepts plain sockets (asyncio's sock_* calls refuse SSLSockets too)."""
    client_side = ssl.create_default_context()
    unconnected = client_side.wrap_socket(
        socket.socket(), server_hostname="localhost", do_handshake_on_connect=False
    )
    with unconnected, pytest.raises(ValueError, match=r"open_connection\(.*ssl="):
        coro.Socket(unconnected)

    listening = socket.create_server(("127.0.0.1", 0))
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with server_side.wrap_socket(listening, server_side=True) as tls_listener:
        with pytest.raises(ValueError, match=r"serve\(.*ssl="):
            coro.Socket(tls_listener)


def _serve_while_out_of_fds() -> dict:
    """In a child: a server whose accept fails with EMFILE while one client is served."""
    records: list[logging.LogRecord] = []
    collector = logging.Handler(logging.ERROR)
    collector.emit = records.append
    logging.getLogger("plait.coro").addHandler(collector)

    async def echo(client, address):
        await client.sendall(b"hello")
        while data := await client.recv(100):
            await client.sendall(data)

    async def main():
        listener = coro.tcp_server_socket("127.0.0.1", 0)
        server = await coro.spawn(functools.partial(coro.serve, listener, echo))
        address = listener.getsockname()
        seen = {}
        async with coro.timeout_after(10):
            first = await coro.open_connection(*address)
            assert await first.recv(5) == b"hello"
            # blocking connects: they wait in the backlog, the server does not run
            later = [coro.Socket(socket.create_connection(address, 5)) for _ in range(2)]
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            lowest_free = os.open(os.devnull, os.O_RDONLY)
            os.close(lowest_free)
            resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # no new fd
            try:
                while not records:  # until the server's accept has failed
                    await coro.sleep(0.01)
                await first.sendall(b"ping")
                seen["first served meanwhile"] = await first.recv(100)
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            seen["later greeted"] = [await sock.recv(5) for sock in later]
        seen["server running"] = not server.terminated
        seen["logged"] = records[0].getMessage()
        await server.cancel()
        for sock in (first, *later):
            await sock.close()
        return seen

    try:
        return coro.run(main)
    except Exception as e:  # brought back as text: a TaskTimeout does not survive pickling
        return {"error": repr(e)}
    finally:
        logging.getLogger("plait.coro").removeHandler(collector)


def test_a_server_out_of_fds_pauses_accepting_and_goes_on():
    """As asyncio's server does: EMFILE on accept is logged, the running handlers go on,
    and the waiting clients are accepted once fds are free again. The fd limit is lowered
    in a child, so this process's own stays untouched."""
    seen = run_in_child(_serve_while_out_of_fds)
    assert "error" not in seen, seen["error"]
    assert seen["first served meanwhile"] == b"ping"
    assert seen["later greeted"] == [b"hello", b"hello"]
    assert seen["server running"]
    assert "Too many open files" in seen["logged"]


def test_a_unix_connect_to_a_full_backlog_waits_for_room(tmp_path):
    """A blocking ``socket.connect`` waits until the listener accepts; a non-blocking one
    fails with EAGAIN, and no connection is under way then."""
    path = str(tmp_path / "full.sock")

    async def main():
        async with coro.unix_server_socket(path, backlog=1) as listener:
            queued = [await coro.open_unix_connection(path) for _ in range(2)]  # backlog + 1
            with socket.socket(socket.AF_UNIX) as probe:
                probe.setblocking(False)
                with pytest.raises(BlockingIOError):  # the backlog is full indeed
                    probe.connect(path)
            pending = await coro.spawn(coro.open_unix_connection, path)
            await coro.sleep(0.05)
            assert not pending.terminated  # it waits: there is no connection yet
            async with coro.timeout_after(10):
                accepted, _ = await listener.accept()  # room for one more
                sock = await pending.join()
                assert sock.getpeername() == path
            for each in (accepted, sock, *queued):
                await each.close()

    coro.run(main)


def test_a_tcp_connect_that_fails_with_eagain_raises_it():
    """Non-blocking TCP connect fails with EAGAIN when no local port is free; nothing is
    under way then, and the connect must not report success."""

    class NoFreePort(socket.socket):
        def connect(self, address):
            raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))

    async def main():
        async with coro.Socket(NoFreePort()) as sock:
            with pytest.raises(OSError, match="127.0.0.1") as info:
                async with coro.timeout_after(5):
                    await sock.connect(("127.0.0.1", 9))
            assert info.value.errno == errno.EAGAIN

    coro.run(main)


def test_reads_of_zero_bytes_return_at_once_after_a_short_read():
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"x")
        assert b.recv(100) == b"x"
        assert b.recv(0) == b""  # the standard socket, blocking: b"" at once
        assert b.recv_into(bytearray()) == 0

    async def main():
        sa, sb = await short_read_pair("zero")
        stream = sb.as_stream()
        async with coro.timeout_after(5):
            assert await sb.recv(0) == b""
            assert await sb.recv_into(bytearray()) == 0
            assert await stream.read(0) == b""
            await sa.sendall(b"after")
            assert await stream.read(100) == b"after"
        await sa.close()
        await stream.close()

    coro.run(main)


async def asyncio_reader(data: bytes, limit: int = 2**16) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=limit)
    reader.feed_data(data)
    reader.feed_eof()
    return reader


def test_readline_refuses_a_line_over_the_limit_that_came_in_one_piece():
    line = b"L" * 100 + b"\n"

    async def with_asyncio():
        with pytest.raises(ValueError):
            await (await asyncio_reader(line, limit=10)).readline()

    asyncio.run(with_asyncio())

    async def main():
        a, b = socket.socketpair()
        async with coro.Socket(a).as_stream() as sa, coro.Socket(b).as_stream() as sb:
            async with coro.timeout_after(5):
                await sa.write(line)
                assert await sb.read_exactly(0) == b""
                assert await sb.readline(limit=len(line)) == line  # at the limit: fine
                await sa.write(line + b"tail")
                await sb.read_exactly(1)  # the rest arrives in the buffer, newline too
                with pytest.raises(ValueError, match="within 10 bytes"):
                    await sb.readline(limit=10)
                assert await sb.readline() == line[1:]  # the bytes stayed buffered

    coro.run(main)


def test_read_exactly_a_negative_count_is_a_value_error():
    async def with_asyncio():
        with pytest.raises(ValueError):
            await (await asyncio_reader(b"head\nbody")).readexactly(-1)

    asyncio.run(with_asyncio())

    async def main():
        a, b = socket.socketpair()
        async with coro.Socket(a).as_stream() as sa, coro.Socket(b).as_stream() as sb:
            async with coro.timeout_after(5):
                await sa.write(b"head\nbody")
                assert await sb.readline() == b"head\n"
                with pytest.raises(ValueError, match="-1"):
                    await sb.read_exactly(-1)
                assert await sb.read_exactly(4) == b"body"  # nothing was taken

    coro.run(main)


def test_sendall_of_a_typed_buffer_sends_every_byte_when_send_is_short():
    class ShortSend(socket.socket):
        """At most 100 bytes per send, as a nearly full send buffer takes."""

        def send(self, data, flags=0):
            with memoryview(data).cast("B") as view:
                return super().send(view[:100], flags)

    data = array.array("i", range(100))  # 100 items, 400 bytes

    async def main():
        a, b = socket.socketpair()
        sa, sb = coro.Socket(ShortSend(fileno=a.detach())), coro.Socket(b)
        async with coro.timeout_after(5):
            await sa.sendall(data)
            await sa.close()
            got = b""
            while chunk := await sb.recv(4096):
                got += chunk
        await sb.close()
        return got

    assert coro.run(main) == data.tobytes()


def _epoll_watches(epoll_fd: int) -> set[int]:
    """The fds an epoll instance watches, as Linux reports them (``tfd:`` lines)."""
    with open(f"/proc/self/fdinfo/{epoll_fd}") as info:
        return {int(line.split()[1]) for line in info if line.startswith("tfd:")}


@pytest.mark.parametrize("dup", [False, True], ids=["alone", "with a copy of its fd"])
def test_a_socket_dropped_without_close_is_collected_and_the_kernel_forgets_it(dup):
    """A handler that returns without closing its connection: the socket is collected
    (closing its fd, so the peer sees EOF) and leaves neither its fd table entry nor its
    epoll registration behind, even while a copy of the fd (a forked child's, here a dup)
    keeps the connection open and readable."""

    async def main():
        kernel = traps.kernel()
        peer, dropped = map(coro.Socket, socket.socketpair())
        fd = dropped.fileno()
        copy = os.dup(fd) if dup else None
        try:
            await peer.sendall(b"x")
            assert await dropped.recv(100) == b"x"
            reading = await coro.spawn(dropped.recv, 100)  # registers the fd, then waits
            await coro.sleep(0)
            assert fd in kernel._fds and fd in _epoll_watches(kernel._epoll.fileno())
            await reading.cancel()
            del dropped, reading
            gc.collect()
            assert fd not in kernel._fds
            assert fd not in _epoll_watches(kernel._epoll.fileno())
            if copy is None:
                async with coro.timeout_after(5):
                    assert await peer.recv(100) == b""  # the dropped socket's fd closed
            else:
                await peer.sendall(b"readable, for nobody")
                await coro.sleep(0.01)  # the loop goes round with the copy readable
                assert fd not in _epoll_watches(kernel._epoll.fileno())
                assert os.read(copy, 100) == b"readable, for nobody"
        finally:
            if copy is not None:
                os.close(copy)
            await peer.close()

    with pytest.warns(ResourceWarning, match="unclosed"):
        coro.run(main)


def test_a_socket_dropped_in_another_thread_leaves_its_fd_number_usable():
    """The last reference to a registered socket goes in a worker thread: the kernel's
    table is left alone there (its entry goes stale), and a new socket that gets the same
    fd number is registered afresh and works."""

    async def main():
        kernel = traps.kernel()
        peer, dropped = map(coro.Socket, socket.socketpair())
        fd = dropped.fileno()
        reading = await coro.spawn(dropped.recv, 100)
        await coro.sleep(0)
        await reading.cancel()
        del reading
        holder = [dropped]
        del dropped
        await coro.run_in_thread(holder.clear)
        assert fd not in _epoll_watches(kernel._epoll.fileno())
        async with coro.timeout_after(5):
            assert await peer.recv(100) == b""
        await peer.close()
        again, other = map(coro.Socket, socket.socketpair())
        assert fd in (again.fileno(), other.fileno())
        async with again, other:
            for sender, receiver in ((again, other), (other, again)):
                waiting = await coro.spawn(receiver.recv, 100)
                await coro.sleep(0)
                await sender.sendall(b"through the reused number")
                async with coro.timeout_after(5):
                    assert await waiting.join() == b"through the reused number"

    with pytest.warns(ResourceWarning, match="unclosed"):
        coro.run(main)


@pytest.mark.parametrize("how", ["drops", "closes"])
def test_a_forked_child_that_drops_or_closes_a_socket_leaves_the_parent_its_registration(how):
    """A child forked from the kernel's thread shares the kernel's epoll set: its copy of
    a socket going away must not take the parent's registration with it."""
    held = []

    async def main():
        kernel = traps.kernel()
        sock, peer = map(coro.Socket, socket.socketpair())
        fd = sock.fileno()
        reading = await coro.spawn(sock.recv, 100)  # registered for reading
        await coro.sleep(0)
        await reading.cancel()
        held.append(sock)
        del sock, reading
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork of a threaded process
            pid = os.fork()
        if pid == 0:
            if how == "drops":
                held.clear()
                gc.collect()
            else:
                held[0].close_nowait()
            os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0
        assert fd in kernel._fds and fd in _epoll_watches(kernel._epoll.fileno())
        waiting = await coro.spawn(held[0].recv, 100)
        await coro.sleep(0)
        await peer.sendall(b"still the parent's")
        try:
            async with coro.timeout_after(5):
                assert await waiting.join() == b"still the parent's"
        finally:
            await held.pop().close()
            await peer.close()

    coro.run(main)


_EXIT_WITH_A_REGISTERED_SOCKET = """
import json, socket, threading
from plait import coro

registered = threading.Event()

async def main():
    a, b = map(coro.Socket, socket.socketpair())
    reading = await coro.spawn(a.recv, 10)
    await coro.sleep(0)
    await reading.cancel()
    json._held = [a, b]  # in a module whose globals are cleared after plait's at exit
    del a, b, reading
    registered.set()
    await coro.sleep(1000)

threading.Thread(target=coro.run, args=(main,), daemon=True).start()
assert registered.wait(10)
print("exiting", flush=True)
"""


def test_a_registered_socket_collected_at_interpreter_exit_is_quiet():
    """The registration's callback may run after the kernel module's globals are gone:
    nothing is printed ("Exception ignored in ...")."""
    done = subprocess.run(
        [sys.executable, "-W", "ignore::ResourceWarning", "-c", _EXIT_WITH_A_REGISTERED_SOCKET],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "exiting\n", "")
