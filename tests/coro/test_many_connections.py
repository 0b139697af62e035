"""An echo server on plait holding 10,000 concurrent connections in one thread."""

from __future__ import annotations

import functools
import resource
import subprocess
import sys
import textwrap

import pytest

from plait import coro

pytestmark = [pytest.mark.usefixtures("no_leaks", "core")]

CONNECTIONS = 10_000

# The clients live in a child process (so each side needs only ~10,000 fds): it opens
# every connection, sends one message on each, reads every echo while all stay open,
# then reports and closes them.
CLIENT = textwrap.dedent(
    """
    import select, socket, sys
    port, n = int(sys.argv[1]), int(sys.argv[2])
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        socks.append(s)
    for i, s in enumerate(socks):
        s.sendall(b"%08d" % i)
    ok = 0
    for i, s in enumerate(socks):
        data = b""
        while len(data) < 8:
            chunk = s.recv(8 - len(data))
            if not chunk:
                break
            data += chunk
        ok += data == b"%08d" % i
    print(ok, flush=True)
    sys.stdin.read()  # hold every connection open until the parent has counted them
    """
)


def _raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below the {need} fds this test needs")
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


@pytest.mark.timeout(120)
def test_echo_server_with_10000_concurrent_connections():
    _raise_fd_limit(CONNECTIONS + 500)
    peak = [0]
    live = [0]

    async def handler(client, addr):
        live[0] += 1
        peak[0] = max(peak[0], live[0])
        try:
            stream = client.as_stream()
            while True:
                data = await stream.read(100)
                if not data:
                    break
                await stream.write(data)
        finally:
            live[0] -= 1

    async def main():
        listener = coro.tcp_server_socket("127.0.0.1", 0, backlog=4096)
        port = listener.getsockname()[1]
        server = await coro.spawn(functools.partial(coro.serve, listener, handler))
        child = subprocess.Popen(
            [sys.executable, "-c", CLIENT, str(port), str(CONNECTIONS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            async with coro.timeout_after(90):
                line = await coro.run_in_thread(child.stdout.readline)
                concurrent = live[0]
            child.stdin.close()  # the client closes everything and exits
            async with coro.timeout_after(30):
                await coro.run_in_thread(child.wait)
                while live[0]:
                    await coro.sleep(0.01)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
            await server.cancel()
        return int(line), concurrent

    echoed, concurrent = coro.run(main)
    assert echoed == CONNECTIONS
    assert concurrent == CONNECTIONS
    assert peak[0] == CONNECTIONS
