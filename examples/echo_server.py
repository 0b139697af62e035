"""An echo server and 1,000 clients in one thread, on plait.coro.

    python examples/echo_server.py            # the server and 1,000 clients, then stats
    python examples/echo_server.py --serve    # only the server, on 127.0.0.1:25000

The server is ``tcp_server``-style: one task per connection, each reading lines from a
stream and writing them back. The clients are tasks of the same kernel; a TaskGroup
runs them and a timeout bounds the whole exchange. ``ps()`` shows what the tasks wait
for in the middle of it.
"""

from __future__ import annotations

import argparse
import functools
import resource
import time

from plait import coro

CLIENTS = 1000
ROUNDS = 20


async def echo(client: coro.Socket, address: tuple[str, int]) -> None:
    async with client.as_stream() as stream:
        async for line in stream:
            await stream.write(line)


async def one_client(port: int, n: int) -> int:
    sock = await coro.open_connection("127.0.0.1", port)
    async with sock.as_stream() as stream:
        for r in range(ROUNDS):
            line = b"client %d round %d\n" % (n, r)
            await stream.write(line)
            if await stream.readline() != line:
                raise RuntimeError(f"client {n} got a wrong echo in round {r}")
    return ROUNDS


async def main(clients: int) -> None:
    listener = coro.tcp_server_socket("127.0.0.1", 0)
    port = listener.getsockname()[1]
    server = await coro.spawn(functools.partial(coro.serve, listener, echo))
    print(f"echo server on 127.0.0.1:{port}; {clients} clients x {ROUNDS} lines")
    t0 = time.perf_counter()
    async with coro.timeout_after(60):
        async with coro.TaskGroup() as group:
            for n in range(clients):
                await group.spawn(one_client, port, n)
            await coro.sleep(0.05)
            states: dict[str, int] = {}
            for info in coro.ps():
                states[info.state] = states.get(info.state, 0) + 1
            print("task states midway:", ", ".join(f"{s} {c}" for s, c in sorted(states.items())))
    elapsed = time.perf_counter() - t0
    lines = sum(t.result for t in group.tasks)
    print(f"{lines} lines echoed in {elapsed:.2f} s ({lines / elapsed:,.0f} round trips/s)")
    await server.cancel()


async def serve_forever() -> None:
    print("echo server on 127.0.0.1:25000 (Ctrl-C stops it)")
    await coro.tcp_server("127.0.0.1", 25000, echo)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="only run the server")
    parser.add_argument("--clients", type=int, default=CLIENTS)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * args.clients + 100
    if soft < need <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    try:
        coro.run(serve_forever if args.serve else functools.partial(main, args.clients))
    except KeyboardInterrupt:
        print("stopped")
