"""Threads and coroutines sharing work: a UniversalQueue, run_in_thread, and Ctrl-C.

    python examples/threads_meet_coroutines.py

Four ordinary threads produce numbers with blocking ``put``; a hundred tasks take them
with ``await get_async()`` (the kernel never blocks), hash each one in a worker thread
with ``run_in_thread`` and report through a kernel Queue. Press Ctrl-C at any time: the
main task is cancelled, its ``finally`` runs, and the program ends cleanly. A SIGUSR1
(``kill -USR1 <pid>``) prints the task table from ``ps()``.
"""

from __future__ import annotations

import hashlib
import os
import queue
import signal
import threading

from plait import coro

PRODUCERS = 4
PER_PRODUCER = 25000
CONSUMERS = 100


def produce(q: coro.UniversalQueue, base: int, stop: threading.Event) -> None:
    for n in range(PER_PRODUCER):
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


async def main() -> None:
    print(f"pid {os.getpid()}: {PRODUCERS} threads -> {CONSUMERS} tasks -> worker threads")
    source = coro.UniversalQueue(maxsize=64)
    results = coro.Queue()
    stop = threading.Event()
    threads = [
        threading.Thread(target=produce, args=(source, k * 100_000, stop)) for k in range(PRODUCERS)
    ]
    try:
        await coro.spawn(show_tasks_on_sigusr1, daemon=True)
        async with coro.timeout_after(60), coro.TaskGroup() as group:
            for _ in range(CONSUMERS):
                await group.spawn(consume, source, results)
            for t in threads:
                t.start()
            seen: dict[int, str] = {}
            while len(seen) < PRODUCERS * PER_PRODUCER:
                n, h = await results.get()
                seen[n] = h
            group.cancel_remaining()
        print(f"{len(seen)} numbers hashed; first: {min(seen)} -> {seen[min(seen)]}")
    finally:
        stop.set()
        for t in threads:
            if t.is_alive():
                t.join(timeout=5)
        print("main task: finally ran")


if __name__ == "__main__":
    try:
        coro.run(main)
    except KeyboardInterrupt:
        print("interrupted, cleanly")
