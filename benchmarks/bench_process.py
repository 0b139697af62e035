"""Processes and pipes: plait beside the standard library's multiprocessing, in one run.

Cases:
- start+join of one process doing nothing, per start method (fork, forkserver, spawn);
  raw ``os.fork`` + ``waitpid`` and ``python -c pass`` are shown as floors. Forkserver and
  spawn run in start_driver.py, a lean script (children re-import ``__main__``), after
  one untimed start: forkserver is measured warm, each spawn child starts cold.
- Pipe ping-pong: small messages to a child that echoes them, round trips per second.
- Pipe bandwidth: 8 MB ``bytes`` and 8 MB numpy arrays sent one way to a child, which
  answers with a checksum of what it received (checked equal across variants).

Run: python benchmarks/bench_process.py [--quick]
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import subprocess
import sys
import time
import zlib

import numpy as np
from harness import Bench, rate, timed

import plait.ipc
import plait.process

QUICK = "--quick" in sys.argv
ROUNDS = 3 if QUICK else 5
MB = 1 << 20


def nothing() -> None:
    pass


def echo(conn) -> None:
    """Send back every message until None arrives."""
    while (msg := conn.recv()) is not None:
        conn.send(msg)
    conn.close()


def checksum_sink(conn) -> None:
    """Receive messages until None; answer with a checksum of the last one."""
    last = None
    while (msg := conn.recv()) is not None:
        last = msg
    conn.send(zlib.crc32(memoryview(last).cast("B")))
    conn.close()


# -- start + join --------------------------------------------------------------------


def start_join(ctx, count: int) -> float:
    def run():
        for _ in range(count):
            p = ctx.Process(target=nothing)
            p.start()
            p.join()

    seconds, _ = timed(run)
    return seconds / count


def start_join_script(impl: str, method: str, count: int) -> float:
    """Seconds per start+join, measured by start_driver.py in a lean script of its own."""
    driver = os.path.join(os.path.dirname(os.path.abspath(__file__)), "start_driver.py")
    out = subprocess.run(
        [sys.executable, driver, impl, method, str(count)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return float(out.stdout.split()[-1])


def raw_fork(count: int) -> float:
    def run():
        for _ in range(count):
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)

    seconds, _ = timed(run)
    return seconds / count


def python_pass(count: int) -> float:
    seconds, _ = timed(
        lambda: [subprocess.run([sys.executable, "-c", "pass"], check=True) for _ in range(count)]
    )
    return seconds / count


# -- pipes ----------------------------------------------------------------------------


def with_child(ctx, pipe, child, work):
    """Start ``child(conn)`` in a process of ``ctx``, run ``work(conn)``, then stop it."""
    here, there = pipe()
    p = ctx.Process(target=child, args=(there,))
    p.start()
    there.close()
    try:
        return work(here)
    finally:
        p.join(10)
        if p.exitcode is None:
            p.kill()
            p.join(10)
        here.close()


def ping_pong(ctx, pipe, n: int):
    msg = b"x" * 64

    def work(conn):
        conn.send(msg)
        conn.recv()  # warm

        def loop():
            send, recv = conn.send, conn.recv
            for _ in range(n):
                send(msg)
                recv()

        trips = rate(n, loop)[0]
        conn.send(None)
        return trips

    return with_child(ctx, pipe, echo, work)


def raw_socketpair_ping_pong(n: int) -> float:
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        a.close()
        while (data := b.recv(256)) != b"q":
            b.sendall(data)
        os._exit(0)
    b.close()

    def loop():
        for _ in range(n):
            a.sendall(b"x" * 64)
            a.recv(256)

    r = rate(n, loop)[0]
    a.sendall(b"q")
    os.waitpid(pid, 0)
    a.close()
    return r


def bandwidth(ctx, pipe, payload, count: int):
    size = memoryview(payload).nbytes

    def work(conn):
        send = conn.send

        def loop():
            for _ in range(count):
                send(payload)
            send(None)
            return conn.recv()

        return rate(count * size / 1e9, loop)

    return with_child(ctx, pipe, checksum_sink, work)


def copies(dst, src, count: int) -> None:
    for _ in range(count):
        np.copyto(dst, src)


def main() -> None:
    bench = Bench("processes and pipes", packages=["numpy"], rounds=ROUNDS, cap=120)
    std = {m: multiprocessing.get_context(m) for m in ("fork",)}
    ours = {m: plait.process.get_context(m) for m in ("fork",)}
    n_fork = 30 if QUICK else 100
    bench.case(
        "fork: start+join",
        {
            "plait": lambda: start_join(ours["fork"], n_fork),
            "multiprocessing": lambda: start_join(std["fork"], n_fork),
            "raw os.fork+waitpid": lambda: raw_fork(n_fork),
        },
        unit="s",
        higher_is_better=False,
    )
    n_fs = 10 if QUICK else 30
    bench.case(
        "forkserver: start+join (warm server)",
        {
            "plait": lambda: start_join_script("plait", "forkserver", n_fs),
            "multiprocessing": lambda: start_join_script("multiprocessing", "forkserver", n_fs),
        },
        unit="s",
        higher_is_better=False,
    )
    n_spawn = 4 if QUICK else 10
    bench.case(
        "spawn: start+join",
        {
            "plait": lambda: start_join_script("plait", "spawn", n_spawn),
            "multiprocessing": lambda: start_join_script("multiprocessing", "spawn", n_spawn),
            "python -c pass": lambda: python_pass(n_spawn),
        },
        unit="s",
        higher_is_better=False,
    )

    n_pp = 5000 if QUICK else 20000
    bench.case(
        "Pipe ping-pong, 64 B messages",
        {
            "plait": lambda: ping_pong(ours["fork"], plait.ipc.Pipe, n_pp),
            "multiprocessing": lambda: ping_pong(std["fork"], multiprocessing.Pipe, n_pp),
            "raw socketpair": lambda: raw_socketpair_ping_pong(n_pp),
        },
        unit="round trips/s",
    )

    n_big = 20 if QUICK else 50
    for label, data in (
        ("8 MB bytes", os.urandom(8 * MB)),
        ("8 MB numpy arrays", np.random.default_rng(1).random(MB)),
    ):
        bench.case(
            f"Pipe send/recv of {label}, one way",
            {
                "plait": lambda d=data: bandwidth(ours["fork"], plait.ipc.Pipe, d, n_big),
                "multiprocessing": lambda d=data: bandwidth(
                    std["fork"], multiprocessing.Pipe, d, n_big
                ),
            },
            unit="GB/s",
        )
    big = np.random.default_rng(2).random(MB)
    dst = np.empty_like(big)
    bench.case(
        "memcpy of 8 MB (floor, not a peer)",
        {"numpy copyto": lambda: rate(200 * 8 * MB / 1e9, lambda: copies(dst, big, 200))[0]},
        unit="GB/s",
    )
    bench.close()


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"# total {time.perf_counter() - t0:.0f} s")
