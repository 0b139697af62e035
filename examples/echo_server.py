"""An echo server holding 1,000 connections at once, and its 1,000 clients, in one thread.

    python examples/echo_server.py                    # the server and 1,000 clients, then stats
    python examples/echo_server.py --clients 5000     # more (each connection takes 2 fds here)
    python examples/echo_server.py --serve            # only the server, on 127.0.0.1:25000

Both sides are tasks of one plait.coro kernel. The server is ``serve``: one task per
connection, each reading lines from a stream and writing them back, counting the
connections it holds. Each client connects and then waits until the server holds
*every* client's connection at once, before it sends its lines and checks each echo:
the program proves it held them all together, not one after another. A TaskGroup runs
the clients and a timeout bounds the whole exchange; ``ps()`` shows what the tasks wait
for in the middle of it.

Each connection costs two file descriptors in this process (the client's socket and the
server's), so the program raises its soft ``RLIMIT_NOFILE`` to what it needs, up to the
hard limit, and says so when the hard limit is too low.
"""

from __future__ import annotations

import argparse
import functools
import resource
import sys
import time

from plait import coro

CLIENTS = 1000
ROUNDS = 20
PORT = 25000  # of --serve


class EchoServer:
    """The connection handler, and how many connections it holds (now and at most)."""

    def __init__(self, expected: int | None = None) -> None:
        self.live = 0
        self.peak = 0
        self.expected = expected
        self.all_held = coro.Event()  # set when ``expected`` connections are held at once

    async def handle(self, client: coro.Socket, address: tuple[str, int]) -> None:
        self.live += 1
        self.peak = max(self.peak, self.live)
        if self.live == self.expected:
            self.all_held.set()
        try:
            async with client.as_stream() as stream:
                async for line in stream:
                    await stream.write(line)
        finally:
            self.live -= 1


async def one_client(port: int, n: int, server: EchoServer) -> int:
    """Connect, wait until the server holds every client, echo ``ROUNDS`` lines."""
    sock = await coro.open_connection("127.0.0.1", port)
    async with sock.as_stream() as stream:
        await server.all_held.wait()
        for r in range(ROUNDS):
            line = b"client %d round %d\n" % (n, r)
            await stream.write(line)
            if await stream.readline() != line:
                raise RuntimeError(f"client {n} got a wrong echo in round {r}")
    return ROUNDS


async def clients_and_server(clients: int) -> int:
    server = EchoServer(expected=clients)
    listener = coro.tcp_server_socket("127.0.0.1", 0, backlog=max(1024, clients))
    port = listener.getsockname()[1]
    serving = await coro.spawn(functools.partial(coro.serve, listener, server.handle))
    print(f"echo server on 127.0.0.1:{port}; {clients} clients x {ROUNDS} lines")
    t0 = time.perf_counter()
    async with coro.timeout_after(60):
        async with coro.TaskGroup() as group:
            for n in range(clients):
                await group.spawn(one_client, port, n, server)
            await server.all_held.wait()
            states: dict[str, int] = {}
            for info in coro.ps():
                states[info.state] = states.get(info.state, 0) + 1
            print("task states midway:", ", ".join(f"{s} {c}" for s, c in sorted(states.items())))
    elapsed = time.perf_counter() - t0
    lines = sum(t.result for t in group.tasks)
    print(f"the server held {server.peak} connections at once")
    print(f"{lines} lines echoed in {elapsed:.2f} s ({lines / elapsed:,.0f} round trips/s)")
    await serving.cancel()
    if server.peak != clients or lines != clients * ROUNDS:
        print("MISMATCH: connections or lines are missing", file=sys.stderr)
        return 1
    return 0


async def serve_forever() -> int:
    print(f"echo server on 127.0.0.1:{PORT} (Ctrl-C stops it)")
    await coro.tcp_server("127.0.0.1", PORT, EchoServer().handle)
    return 0


def raise_fd_limit(need: int) -> str | None:
    """Raise the soft RLIMIT_NOFILE to ``need``; return why it cannot, or None."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return None
    if hard != resource.RLIM_INFINITY and hard < need:
        return f"this needs {need} file descriptors; the hard RLIMIT_NOFILE is {hard}"
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--serve", action="store_true", help=f"only the server, on port {PORT}")
    parser.add_argument("--clients", type=int, default=CLIENTS)
    args = parser.parse_args(argv)
    problem = raise_fd_limit(2 * args.clients + 100)
    if problem:
        print(f"{problem}: raise it (ulimit -Hn) or run with fewer --clients", file=sys.stderr)
        return 2
    try:
        program = (
            serve_forever if args.serve else functools.partial(clients_and_server, args.clients)
        )
        status: int = coro.run(program)
        return status
    except KeyboardInterrupt:
        print("stopped")
        return 0


if __name__ == "__main__":
    sys.exit(main())
