"""Sockets and streams on real 127.0.0.1 (and Unix) sockets: echo, errors, TLS, leaks."""

from __future__ import annotations

import errno
import functools
import logging
import os
import shutil
import socket
import ssl
import subprocess
import traceback

import pytest

from plait import coro

pytestmark = [pytest.mark.usefixtures("no_leaks", "core"), pytest.mark.timeout(30)]


async def echo_handler(client, addr):
    stream = client.as_stream()
    while True:
        data = await stream.read(65536)
        if not data:
            break
        await stream.write(data)


async def start_echo(handler=echo_handler, **kwargs):
    """Listen on a free port of 127.0.0.1; return (server task, port)."""
    listener = coro.tcp_server_socket("127.0.0.1", 0)
    port = listener.getsockname()[1]
    return await coro.spawn(functools.partial(coro.serve, listener, handler, **kwargs)), port


def test_echo_with_sockets_and_streams():
    async def main():
        server, port = await start_echo()
        async with coro.timeout_after(10):
            sock = await coro.open_connection("127.0.0.1", port)
            async with sock:
                await sock.sendall(b"hello")
                assert await sock.recv(100) == b"hello"
                stream = sock.as_stream()
                await stream.write(b"line one\nline two\n12345")
                assert await stream.readline() == b"line one\n"
                assert [await stream.readline()] == [b"line two\n"]
                assert await stream.read_exactly(5) == b"12345"
                big = os.urandom(1 << 20)
                writer = await coro.spawn(stream.write, big)
                assert await stream.read_exactly(len(big)) == big
                await writer.join()
        await server.cancel()
        return "ok"

    assert coro.run(main) == "ok"


def test_read_exactly_at_end_of_stream_raises_incomplete_read():
    async def short_reply(client, addr):
        await client.sendall(b"abc")

    async def main():
        server, port = await start_echo(short_reply)
        async with coro.timeout_after(10):
            stream = (await coro.open_connection("127.0.0.1", port)).as_stream()
            async with stream:
                with pytest.raises(coro.IncompleteRead) as info:
                    await stream.read_exactly(10)
                assert isinstance(info.value, EOFError)
                assert info.value.partial == b"abc"
                assert await stream.read() == b""
        await server.cancel()

    coro.run(main)


def test_cancelling_a_task_blocked_in_recv():
    async def main():
        a, b = socket.socketpair()
        sa, sb = coro.Socket(a), coro.Socket(b)
        reader = await coro.spawn(sa.recv, 100)
        await coro.sleep(0.01)
        assert reader.state == "READ_WAIT"
        await reader.cancel()
        assert reader.cancelled
        # the socket still works after the cancelled wait
        await sb.sendall(b"after")
        async with coro.timeout_after(5):
            data = await sa.recv(100)
        await sa.close()
        await sb.close()
        return data

    assert coro.run(main) == b"after"


def test_timeout_on_recv():
    async def main():
        a, b = socket.socketpair()
        async with coro.Socket(a) as sa, coro.Socket(b):
            with pytest.raises(coro.TaskTimeout):
                async with coro.timeout_after(0.02):
                    await sa.recv(10)

    coro.run(main)


def test_closed_socket_names_the_cause_and_wakes_its_waiter():
    async def main():
        a, b = socket.socketpair()
        sa, sb = coro.Socket(a), coro.Socket(b)
        reader = await coro.spawn(sa.recv, 100)
        await coro.sleep(0.01)
        await sa.close()  # another task closes the socket under the reader
        with pytest.raises(coro.ClosedResourceError, match="closed"):
            await reader.join()
        with pytest.raises(OSError) as info:
            await sa.recv(10)
        assert info.value.errno == errno.EBADF
        with pytest.raises(coro.ClosedResourceError):
            await sa.sendall(b"x")
        await sb.close()

    coro.run(main)


def test_the_rest_of_the_standard_socket_api_reaches_the_wrapped_socket():
    a, b = socket.socketpair()
    sa = coro.Socket(a)
    missing = [n for n in dir(socket.socket) if not n.startswith("_") and not hasattr(sa, n)]
    assert missing == []
    assert (sa.family, sa.type) == (a.family, a.type)
    sa.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    assert sa.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == a.getsockopt(
        socket.SOL_SOCKET, socket.SO_SNDBUF
    )
    with pytest.raises(AttributeError):
        sa.no_such_attribute  # noqa: B018
    sa.close_nowait()
    b.close()


def test_two_readers_on_one_socket_is_resource_busy():
    async def main():
        a, b = socket.socketpair()
        sa, sb = coro.Socket(a), coro.Socket(b)
        first = await coro.spawn(sa.recv, 10)
        await coro.sleep(0.01)
        with pytest.raises(coro.ResourceBusy, match="already waits to read"):
            await sa.recv(10)
        await first.cancel()
        await sa.close()
        await sb.close()

    coro.run(main)


def test_port_in_use_names_the_port():
    async def main():
        first = coro.tcp_server_socket("127.0.0.1", 0, reuse_address=False)
        port = first.getsockname()[1]
        try:
            with pytest.raises(OSError, match=f"127.0.0.1:{port}.*in use") as info:
                coro.tcp_server_socket("127.0.0.1", port, reuse_address=False)
            assert info.value.errno == errno.EADDRINUSE
        finally:
            await first.close()

    coro.run(main)


def test_connection_refused_names_the_address():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()

    async def main():
        with pytest.raises(ConnectionRefusedError, match=f"127.0.0.1:{port}"):
            await coro.open_connection("127.0.0.1", port)

    coro.run(main)


def test_a_failing_handler_is_logged_and_the_server_keeps_serving(caplog):
    async def picky(client, addr):
        data = await client.recv(100)
        if data == b"bad":
            raise ValueError("handler choked on bad input")
        await client.sendall(data.upper())

    async def main():
        server, port = await start_echo(picky)
        async with coro.timeout_after(10):
            bad = await coro.open_connection("127.0.0.1", port)
            await bad.sendall(b"bad")
            assert await bad.recv(10) == b""  # the server closed that connection
            await bad.close()
            good = await coro.open_connection("127.0.0.1", port)
            await good.sendall(b"good")
            reply = await good.recv(10)
            await good.close()
        await server.cancel()
        return reply

    with caplog.at_level(logging.ERROR, logger="plait.coro"):
        assert coro.run(main) == b"GOOD"
    assert "handler choked on bad input" in caplog.text
    assert "the server goes on" in caplog.text


def test_a_handler_is_the_task_itself_and_a_failure_shows_its_own_frames(caplog):
    """No wrapper coroutine between the kernel and the handler: the task bears the
    handler's name, and no frame of the server's is in a failure's traceback."""

    async def named_handler(client, addr):
        data = await client.recv(100)
        if data == b"fail":
            raise KeyError("a failure deep in the handler")
        await client.sendall(coro.current_task().name.encode())

    async def main():
        server, port = await start_echo(named_handler)
        async with coro.timeout_after(10):
            replies = []
            for message in (b"name?", b"fail"):
                client = await coro.open_connection("127.0.0.1", port)
                await client.sendall(message)
                replies.append(await client.recv(200))
                await client.close()
        await server.cancel()
        return replies

    with caplog.at_level(logging.ERROR, logger="plait.coro"):
        name, closed = coro.run(main)
    assert name.decode().endswith("named_handler") and closed == b""
    failure = next(r for r in caplog.records if r.exc_info)
    assert "the server goes on" in failure.getMessage()
    frames = traceback.extract_tb(failure.exc_info[2])
    assert frames[-1].name == "named_handler"
    assert not [f for f in frames if f.filename.endswith("streams.py")], frames  # no wrapper


def test_a_handler_that_is_not_async_is_logged_per_client_and_the_server_goes_on(caplog):
    def not_async(client, addr):  # forgot `async`: returns None, nothing to run
        return None

    async def main():
        server, port = await start_echo(not_async)
        async with coro.timeout_after(10):
            for _ in range(2):
                client = await coro.open_connection("127.0.0.1", port)
                assert await client.recv(10) == b""  # refused by closing, not left open
                await client.close()
        alive = not server.terminated
        await server.cancel()
        return alive

    with caplog.at_level(logging.ERROR, logger="plait.coro"):
        assert coro.run(main) is True
    failures = [r for r in caplog.records if "the server goes on" in r.getMessage()]
    assert len(failures) == 2
    assert "neither a coroutine nor a generator" in str(failures[0].exc_info[1])


def test_a_client_that_vanishes_mid_read_disturbs_nobody():
    async def main():
        server, port = await start_echo()
        async with coro.timeout_after(10):
            # a client that sends part of a message and is reset (SO_LINGER 0)
            rude = socket.create_connection(("127.0.0.1", port))
            rude.sendall(b"half a mess")
            rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            rude.close()
            good = await coro.open_connection("127.0.0.1", port)
            await good.sendall(b"still here")
            reply = await good.recv(100)
            await good.close()
        await server.cancel()
        return reply

    assert coro.run(main) == b"still here"


def test_unix_sockets(tmp_path):
    path = str(tmp_path / "echo.sock")

    async def main():
        server = await coro.spawn(coro.unix_server, path, echo_handler)
        async with coro.timeout_after(10):
            while not os.path.exists(path):
                await coro.sleep(0.001)
            sock = await coro.open_unix_connection(path)
            await sock.sendall(b"over unix")
            reply = await sock.recv(100)
            await sock.close()
        await server.cancel()
        return reply

    assert coro.run(main) == b"over unix"


def test_write_waits_when_the_peer_does_not_read():
    """Backpressure: write blocks (the task, not the kernel) until the peer reads."""

    async def main():
        a, b = socket.socketpair()
        sa, sb = coro.Socket(a), coro.Socket(b)
        stream = sa.as_stream()
        writer = await coro.spawn(stream.write, b"x" * (8 << 20))
        await coro.sleep(0.05)
        assert writer.state == "WRITE_WAIT" and not writer.terminated
        got = 0
        async with coro.timeout_after(10):
            while got < (8 << 20):
                got += len(await sb.recv(1 << 20))
            await writer.join()
        await sa.close()
        await sb.close()
        return got

    assert coro.run(main) == 8 << 20


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            str(d / "key.pem"),
            "-out",
            str(d / "cert.pem"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return str(d / "cert.pem"), str(d / "key.pem")


def test_tls_echo(certificate):
    cert, key = certificate
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=cert)

    async def main():
        server, port = await start_echo(ssl=server_ctx)
        async with coro.timeout_after(10):
            sock = await coro.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
            )
            stream = sock.as_stream()
            payload = os.urandom(200_000)
            writer = await coro.spawn(stream.write, payload)
            echoed = await stream.read_exactly(len(payload))
            await writer.join()
            version = sock.socket.version()
            await stream.close()
        await server.cancel()
        return echoed == payload, version

    ok, version = coro.run(main)
    assert ok and version.startswith("TLS")


def test_tls_with_an_untrusted_certificate_fails_clearly(certificate):
    cert, key = certificate
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def main():
        server, port = await start_echo(ssl=server_ctx)
        try:
            async with coro.timeout_after(10):
                with pytest.raises(ssl.SSLCertVerificationError):
                    await coro.open_connection(
                        "127.0.0.1", port, ssl=True, server_hostname="localhost"
                    )
        finally:
            await server.cancel()

    coro.run(main)


def test_a_read_after_a_short_read_still_sees_data_that_arrived_meanwhile():
    """A drained socket waits before reading; data already there must come at once."""

    async def main():
        a, b = socket.socketpair()
        sa, sb = coro.Socket(a), coro.Socket(b)
        stream = sa.as_stream()
        got = []
        async with coro.timeout_after(5):
            await sb.sendall(b"one")
            got.append(await stream.read(100))  # short read: the socket is now drained
            await sb.sendall(b"two")  # arrives before the next read
            got.append(await stream.read(100))
            await sb.sendall(b"three")
            got.append(await sa.recv(100))
            await sb.sendall(b"four")
            buf = bytearray(100)
            got.append(bytes(buf[: await sa.recv_into(buf)]))
            await sb.close()
            got.append(await stream.read(100))  # end of stream after a drained read
        await sa.close()
        return got

    assert coro.run(main) == [b"one", b"two", b"three", b"four", b""]


def test_run_leaves_nothing_behind_even_with_a_daemon_server_still_running():
    """A daemon server, a name lookup in a worker thread, an open client: after run()
    returns, every fd, thread and epoll object of the kernel is gone (no_leaks checks)."""

    async def handler(client, addr):
        pass

    async def main():
        listener = coro.tcp_server_socket("127.0.0.1", 0)
        port = listener.getsockname()[1]
        await coro.spawn(functools.partial(coro.serve, listener, echo_handler), daemon=True)
        async with coro.timeout_after(10):
            sock = await coro.open_connection("localhost", port)  # resolved in a thread
            await sock.sendall(b"ping")
            reply = await sock.recv(10)
            await sock.close()
        return reply  # the server is still running: run() must cancel and close it

    assert coro.run(main) == b"ping"


def test_a_socket_wait_outside_the_kernel_names_the_cause():
    """A recv or sendall that must wait, awaited in asyncio, raises instead of yielding a
    trap; one that needs no wait just works."""
    import asyncio

    a, b = socket.socketpair()
    sa = coro.Socket(a)

    async def in_asyncio(got):
        b.send(b"x")
        got.append(await sa.recv(100))  # the data is there: no wait, no kernel needed
        await sa.recv(100)  # drained: it would wait

    try:
        got = []
        with pytest.raises(coro.NoKernelError, match=r"plait\.coro\.run\(\)"):
            asyncio.run(in_asyncio(got))
        assert got == [b"x"]
        with pytest.raises(coro.NoKernelError):
            asyncio.run(sa.sendall(b"z" * (64 << 20)))  # fills the buffer, then must wait
    finally:
        sa.close_nowait()
        b.close()


def test_ps_shows_a_task_waiting_in_recv_and_where():
    async def reader(sock):
        return await sock.recv(100)

    async def main():
        a, b = socket.socketpair()
        sa, sb = coro.Socket(a), coro.Socket(b)
        t = await coro.spawn(reader, sa)
        await coro.sleep(0.01)
        row = {info.id: info for info in coro.ps()}[t.id]
        await sb.sendall(b"late")
        got = await t.join()
        await sa.close()
        await sb.close()
        return row, got

    row, got = coro.run(main)
    assert row.state == "READ_WAIT"
    assert "test_sockets.py" in row.where and "reader" in row.where
    assert got == b"late"


def test_a_cancelled_sendall_tells_how_many_bytes_went():
    """A sendall that had to wait for the peer, cancelled there: ``bytes_sent``."""
    sent = []

    async def writer(sock):
        try:
            await sock.sendall(b"x" * (16 << 20))
        except coro.TaskCancelled as e:
            sent.append(e.bytes_sent)
            raise

    async def main():
        a, b = socket.socketpair()
        sa, sb = coro.Socket(a), coro.Socket(b)
        t = await coro.spawn(writer, sa)
        await coro.sleep(0.05)
        assert t.state == "WRITE_WAIT"
        got = len(await sb.recv(1 << 16))
        await coro.sleep(0.01)
        await t.cancel()
        await sa.close()
        await sb.close()
        return got, t.cancelled

    got, cancelled = coro.run(main)
    assert cancelled
    assert len(sent) == 1 and got <= sent[0] < 16 << 20


def test_recv_with_flags_and_recv_into_with_a_count():
    """The calls off the plain path (flags, nbytes, data that is not bytes) give the
    standard results."""

    async def main():
        a, b = socket.socketpair()
        sa, sb = coro.Socket(a), coro.Socket(b)
        async with coro.timeout_after(5):
            await sb.sendall(bytearray(b"peek-"))  # any bytes-like object goes
            await sb.sendall(memoryview(b"and-read"))
            peeked = await sa.recv(4, socket.MSG_PEEK)
            buf = bytearray(32)
            count = await sa.recv_into(buf, 8)
            rest = await sa.recv(100)
            await sb.close()
            end = await sa.recv(100)
        await sa.close()
        return peeked, bytes(buf[:count]), rest, end

    assert coro.run(main) == (b"peek", b"peek-and", b"-read", b"")


def test_a_socket_operation_reports_the_system_error():
    """recv on a connection the peer reset raises ConnectionResetError, as socket does."""

    async def main():
        server = coro.tcp_server_socket("127.0.0.1", 0)
        client = await coro.open_connection("127.0.0.1", server.getsockname()[1])
        peer, _ = await server.accept()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        await client.sendall(b"unread")  # unread data makes close send a reset
        await coro.sleep(0.01)
        await peer.close()
        try:
            async with coro.timeout_after(5):
                with pytest.raises(ConnectionResetError):
                    await client.recv(100)
                    await client.recv(100)
        finally:
            for s in (client, server):
                await s.close()

    coro.run(main)


def test_a_socket_in_a_reference_cycle_is_collected():
    """A Socket subclass with attributes can hold its own pending operation: the cycle
    must still be collectable (the C operations stay out of such classes)."""
    import gc
    import warnings
    import weakref

    class Annotated(coro.Socket):
        pass

    a, b = socket.socketpair()
    sock = Annotated(a)
    sock.held = sock.recv(10)  # socket -> operation -> socket
    sock.close_nowait()
    b.close()
    ref = weakref.ref(sock)
    del sock
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "never awaited"
        gc.collect()
    assert ref() is None


def test_large_and_small_reads_in_turn_return_exactly_what_was_sent():
    """Reads switch between their small and large buffers by the size of the last one."""
    pieces = [os.urandom(n) for n in (60000, 10, 20000, 3, 65536, 1, 5000, 4097, 7)]

    async def main():
        a, b = socket.socketpair()
        sa, sb = coro.Socket(a), coro.Socket(b)
        got = []
        async with coro.timeout_after(10):
            for piece in pieces:
                await sb.sendall(piece)
                data = b""
                while len(data) < len(piece):
                    data += await sa.recv(65536)
                got.append(data)
        await sa.close()
        await sb.close()
        return got

    assert coro.run(main) == pieces


def test_a_read_returns_all_that_is_there_as_the_standard_socket_does():
    """Large reads are sized by the last one; a read that outgrows it still returns all."""
    pieces = [os.urandom(n) for n in (5000, 5000, 30000, 16384, 16384, 60000, 6000, 65536)]

    def standard():
        a, b = socket.socketpair()
        with a, b:
            got = []
            for piece in pieces:
                b.sendall(piece)
                got.append(a.recv(65536))
            return got

    async def plait():
        a, b = socket.socketpair()
        async with coro.Socket(a) as sa, coro.Socket(b) as sb:
            got = []
            async with coro.timeout_after(10):
                for piece in pieces:
                    await sb.sendall(piece)
                    got.append(await sa.recv(65536))
            return got

    assert standard() == pieces
    assert coro.run(plait) == pieces


def test_a_huge_recv_after_a_large_read_keeps_what_came():
    # the C core reads into a chunk of the last large read's size first, then wants room
    # for the rest of the size asked: when there is no memory for that, what came is the
    # read, and nothing is lost (a plain socket.recv of that size raises before reading)
    async def main():
        a, b = socket.socketpair()
        sa, sb = coro.Socket(a), coro.Socket(b)
        try:
            await sa.sendall(b"A" * 10000)
            first = b""
            while len(first) < 10000:  # a large read or two: the size guess is set
                first += await sb.recv(65536)
            await sa.sendall(b"B" * 20000 + b"C" * 10)
            got = b""
            try:
                got = await sb.recv(1 << 44)  # no allocator grants 16 TiB
            except MemoryError:
                pass  # the pure-Python path: socket.recv refuses before reading
            await sa.close()
            while chunk := await sb.recv(65536):
                got += chunk
            return got
        finally:
            await sa.close()
            await sb.close()

    assert coro.run(main) == b"B" * 20000 + b"C" * 10


def test_a_tls_client_that_never_shakes_hands_is_let_go(certificate, caplog):
    # before any handler runs: a silent client would hold its connection for ever
    cert, key = certificate
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def handler(client, addr):
        pass

    async def main():
        listener = coro.tcp_server_socket("127.0.0.1", 0)
        port = listener.getsockname()[1]
        server = await coro.spawn(
            coro.serve(listener, handler, ssl=server_ctx, handshake_timeout=0.2)
        )
        silent = coro.Socket(socket.create_connection(("127.0.0.1", port)))
        try:
            async with coro.timeout_after(30):
                return await silent.recv(100)  # the server closes the connection
        finally:
            await silent.close()
            await server.cancel()

    with caplog.at_level(logging.WARNING, logger="plait.coro"):
        assert coro.run(main) == b""
    assert "no TLS handshake within 0.2 s" in caplog.text


def test_a_handshake_timeout_that_is_not_a_duration_is_refused():
    async def main():
        listener = coro.tcp_server_socket("127.0.0.1", 0)
        try:
            await coro.serve(listener, lambda c, a: None, handshake_timeout=-1)
        finally:
            await listener.close()

    with pytest.raises(ValueError, match="handshake_timeout"):
        coro.run(main)
