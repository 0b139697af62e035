"""Threads: plait's queues, Condition and Event beside queue and threading, in one run.

Cases (all between OS threads of this process; nothing to warm up):
- Queue put/get, 1 producer and 1 consumer thread, unbounded: plait ``Queue`` (full API),
  ``queue.Queue``, and the two ``SimpleQueue`` (no maxsize, no join) as the C floor.
- The same with the full API in use: ``maxsize=1000``, ``task_done()`` per item and a
  final ``join()``.
- Queue put/get, 4 producers and 4 consumers, unbounded.
- Condition ping-pong: two threads take turns through ``notify``/``wait``.
- Event ping-pong: two threads take turns by ``set``/``wait``/``clear`` of two events.

Every variant moves the same items; the result checked equal is the sum of what the
consumers received (or the number of turns taken).

Run: python benchmarks/bench_threads.py [--quick]
"""

from __future__ import annotations

import queue
import sys
import threading

from harness import Bench, rate

import plait.queue
import plait.threading

QUICK = "--quick" in sys.argv
ROUNDS = 3 if QUICK else 5
ITEMS = 200_000 if QUICK else 1_000_000
TURNS = 5_000 if QUICK else 20_000


def run_threads(targets) -> None:
    """Run each target in its own daemon thread and wait for all of them."""
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def producer_consumer(make_queue, producers: int, consumers: int, full_api: bool):
    """A case variant: move ITEMS integers from producers to consumers through a queue."""

    def run():
        q = make_queue()
        per_producer = ITEMS // producers
        per_consumer = per_producer * producers // consumers
        sums = []

        def produce():
            put = q.put  # cached: the loop is what is measured
            for i in range(per_producer):
                put(i)

        def consume():
            get = q.get
            total = 0
            if full_api:
                done = q.task_done
                for _ in range(per_consumer):
                    total += get()
                    done()
            else:
                for _ in range(per_consumer):
                    total += get()
            sums.append(total)

        run_threads([produce] * producers + [consume] * consumers)
        if full_api:
            q.join()
        return sum(sums)

    return lambda: rate(ITEMS, run)


def condition_ping_pong(cond_type):
    """Two threads take turns: each waits for its turn, flips it and notifies."""

    def run():
        cond = cond_type()
        state = {"turn": 0, "count": 0}

        def player(me):
            with cond:
                for _ in range(TURNS):
                    while state["turn"] != me:
                        cond.wait()
                    state["turn"] = 1 - me
                    state["count"] += 1
                    cond.notify()

        run_threads([lambda: player(0), lambda: player(1)])
        return state["count"]

    return lambda: rate(2 * TURNS, run)


def event_ping_pong(event_type):
    """Two threads take turns through two events: set the other's, wait for and clear own."""

    def run():
        ping, pong = event_type(), event_type()
        count = [0]

        def player(mine, other, first):
            for _ in range(TURNS):
                if first:
                    other.set()
                    mine.wait()
                    mine.clear()
                else:
                    mine.wait()
                    mine.clear()
                    other.set()
                count[0] += 1

        run_threads([lambda: player(ping, pong, True), lambda: player(pong, ping, False)])
        return count[0]

    return lambda: rate(2 * TURNS, run)


def main() -> None:
    bench = Bench("threads: queues, Condition, Event", rounds=ROUNDS, cap=60)
    bench.case(
        "Queue put/get, 1 producer / 1 consumer",
        {
            "plait.queue.Queue": producer_consumer(plait.queue.Queue, 1, 1, False),
            "queue.Queue": producer_consumer(queue.Queue, 1, 1, False),
            "queue.SimpleQueue (C)": producer_consumer(queue.SimpleQueue, 1, 1, False),
            "plait.queue.SimpleQueue": producer_consumer(plait.queue.SimpleQueue, 1, 1, False),
        },
        unit="items/s",
    )
    bench.case(
        "Queue(1000) + task_done + join, 1 / 1",
        {
            "plait.queue.Queue": producer_consumer(lambda: plait.queue.Queue(1000), 1, 1, True),
            "queue.Queue": producer_consumer(lambda: queue.Queue(1000), 1, 1, True),
        },
        unit="items/s",
    )
    bench.case(
        "Queue put/get, 4 producers / 4 consumers",
        {
            "plait.queue.Queue": producer_consumer(plait.queue.Queue, 4, 4, False),
            "queue.Queue": producer_consumer(queue.Queue, 4, 4, False),
            "queue.SimpleQueue (C)": producer_consumer(queue.SimpleQueue, 4, 4, False),
        },
        unit="items/s",
    )
    bench.case(
        "Condition notify/wait ping-pong",
        {
            "plait.threading.Condition": condition_ping_pong(plait.threading.Condition),
            "threading.Condition": condition_ping_pong(threading.Condition),
        },
        unit="turns/s",
    )
    bench.case(
        "Event set/wait ping-pong",
        {
            "plait.threading.Event": event_ping_pong(plait.threading.Event),
            "threading.Event": event_ping_pong(threading.Event),
        },
        unit="turns/s",
    )
    bench.close()


if __name__ == "__main__":
    main()
