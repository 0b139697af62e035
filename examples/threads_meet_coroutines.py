"""Threads and coroutines sharing work: a UniversalQueue, run_in_thread, and Ctrl-C.

    python examples/threads_meet_coroutines.py
    python examples/threads_meet_coroutines.py --per-producer 100000

Four ordinary threads produce numbers with blocking ``put``; a hundred tasks take them
with ``await get_async()`` (the kernel never blocks), hash each one in a worker thread
with ``run_in_thread`` and report through a kernel Queue. Press Ctrl-C at any time: the
main task is cancelled, its ``finally`` runs, and the program ends cleanly. A SIGUSR1
(``kill -USR1 <pid>``) prints the task table from ``ps()``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import queue
import signal
import sys
import threading

from plait import coro

PRODUCERS = 4
PER_PRODUCER = 5000
CONSUMERS = 100


def produce(q: coro.UniversalQueue, base: int, count: int, stop: threading.Event) -> None:
    for n in range(count):
        while not stop.is_set():
            try:
                q.put(base + n, timeout=0.1)
                break
            except queue.Full:
                continue  # the consumers are busy; look at the stop flag and try again
        else:
            return


def digest(n: int) -> str:
    return hashlib.sha256(str(n).encode() * 1000).hexdigest()[:12]


async def consume(source: coro.UniversalQueue, results: coro.Queue) -> None:
    while True:
        n = await source.get_async()
        await results.put((n, await coro.run_in_thread(digest, n)))
        source.task_done()


async def show_tasks_on_sigusr1() -> None:
    async with coro.SignalQueue(signal.SIGUSR1) as signals:
        while True:
            await signals.get()
            print(coro.format_ps())


async def hash_all(per_producer: int) -> int:
    print(f"pid {os.getpid()}: {PRODUCERS} threads -> {CONSUMERS} tasks -> worker threads")
    source = coro.UniversalQueue(maxsize=64)
    results = coro.Queue()
    stop = threading.Event()
    threads = [
        threading.Thread(target=produce, args=(source, k * per_producer, per_producer, stop))
        for k in range(PRODUCERS)
    ]
    try:
        await coro.spawn(show_tasks_on_sigusr1, daemon=True)
        async with coro.timeout_after(60), coro.TaskGroup() as group:
            for _ in range(CONSUMERS):
                await group.spawn(consume, source, results)
            for t in threads:
                t.start()
            seen: dict[int, str] = {}
            while len(seen) < PRODUCERS * per_producer:
                n, h = await results.get()
                seen[n] = h
            group.cancel_remaining()
        print(f"{len(seen)} numbers hashed; first: {min(seen)} -> {seen[min(seen)]}")
        if sorted(seen) != list(range(PRODUCERS * per_producer)):
            print("MISMATCH: a number was lost or made up", file=sys.stderr)
            return 1
        if any(seen[n] != digest(n) for n in seen):
            print("MISMATCH: a wrong digest", file=sys.stderr)
            return 1
        print("every number of every producer was hashed once, and right")
        return 0
    finally:
        stop.set()
        for t in threads:
            if t.is_alive():
                t.join(timeout=5)
        print("main task: finally ran")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--per-producer", type=int, default=PER_PRODUCER)
    args = parser.parse_args(argv)
    try:
        status: int = coro.run(functools.partial(hash_all, args.per_producer))
        return status
    except KeyboardInterrupt:
        print("interrupted, cleanly")
        return 130


if __name__ == "__main__":
    sys.exit(main())
