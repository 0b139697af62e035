"""Cross-process queues, pipes and locks: plait beside multiprocessing and faster-fifo.

Cases (processes made by os.fork for every variant alike, so start-up costs the same;
the timed region starts before the fork and ends when the last item has arrived):
- small messages (ints) through a queue, 1 producer / 1 consumer, and 4 / 4;
- queue round trip: the parent puts, a child echoes through a second queue;
- 8 MB numpy arrays through a queue, and through a Pipe, one way;
- Lock acquire/release pairs: uncontended in one process, contended by 2 processes;
- Condition ping-pong: 2 processes hand a turn back and forth (wait, then notify).

Every variant moves the same items; the result checked equal is the sum the consumers
received (or the count of round trips / pairs). faster-fifo's queue is given 100 MB.

Run: python benchmarks/bench_ipc.py [--quick]
"""

from __future__ import annotations

import multiprocessing
import os
import struct
import sys

import numpy as np
from harness import Bench, rate, timed

import plait.ipc
from plait.ipc.queues import Queue as PlaitQueue
from plait.ipc.queues import SimpleQueue as PlaitSimpleQueue
from plait.ipc.synchronize import Lock as PlaitLock

try:
    import faster_fifo
except ImportError:  # the bench extra is not installed: run without it
    faster_fifo = None

QUICK = "--quick" in sys.argv
ROUNDS = 3 if QUICK else 5
ITEMS = 100_000 if QUICK else 300_000
TRIPS = 2_000 if QUICK else 10_000
ARRAYS = 30 if QUICK else 100
PAIRS = 500_000 if QUICK else 2_000_000
HANDOFFS = 5_000 if QUICK else 20_000
ARRAY = np.arange(1_000_000, dtype=np.float64)  # 8 MB
_STD = multiprocessing.get_context("fork")


def _child(fn) -> int:
    """Fork a child that runs ``fn()`` and exits; return its pid."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            fn()
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    return pid


def _reap(pids) -> None:
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"child {pid} failed")


def _ff_queue():
    return faster_fifo.Queue(max_size_bytes=100_000_000)


def _finish_put(q) -> None:
    """What a producer must do before it exits so its items are not lost."""
    if hasattr(q, "join_thread") and type(q).__module__.startswith("multiprocessing"):
        q.close()
        q.join_thread()


def small_messages(make_queue, producers: int, consumers: int):
    """Move ITEMS ints from ``producers`` children to ``consumers`` children."""

    def run():
        q = make_queue()
        per_producer = ITEMS // producers
        per_consumer = ITEMS // consumers
        r, w = os.pipe()

        def produce():
            put = q.put  # cached: the loop is what is measured
            for i in range(per_producer):
                put(i)
            _finish_put(q)

        def consume():
            get = q.get
            total = 0
            if _is_simple(q):  # multiprocessing.SimpleQueue.get takes no timeout
                for _ in range(per_consumer):
                    total += get()
            else:
                for _ in range(per_consumer):
                    total += get(timeout=30)
            os.write(w, struct.pack("q", total))

        pids = [_child(consume) for _ in range(consumers)]
        pids += [_child(produce) for _ in range(producers)]
        total = sum(struct.unpack("q", os.read(r, 8))[0] for _ in range(consumers))
        _reap(pids)
        os.close(r)
        os.close(w)
        return total

    return lambda: rate(ITEMS, run)


def _is_simple(q) -> bool:
    return type(q).__name__ == "SimpleQueue"


def round_trip(make_queue):
    """The parent puts a number, a child puts it back through a second queue."""

    def run():
        there, back = make_queue(), make_queue()

        def echo():
            for _ in range(TRIPS):
                back.put(there.get(timeout=30))
            _finish_put(back)

        pid = _child(echo)
        total = 0
        for i in range(TRIPS):
            there.put(i)
            total += back.get(timeout=30)
        _reap([pid])
        return total

    def measured():
        seconds, total = timed(run)
        return seconds / TRIPS, total

    return measured


def arrays_through_queue(make_queue):
    def run():
        q = make_queue()

        def produce():
            for _ in range(ARRAYS):
                q.put(ARRAY)
            _finish_put(q)

        pid = _child(produce)
        total = 0.0
        for _ in range(ARRAYS):
            total += float(q.get(timeout=30)[-1])
        _reap([pid])
        return total

    return lambda: rate(ARRAYS * ARRAY.nbytes / 1e9, run)


def arrays_through_pipe(make_pipe):
    def run():
        reader, writer = make_pipe(False)

        def produce():
            reader.close()
            for _ in range(ARRAYS):
                writer.send(ARRAY)

        pid = _child(produce)
        writer.close()
        total = 0.0
        for _ in range(ARRAYS):
            total += float(reader.recv()[-1])
        reader.close()
        _reap([pid])
        return total

    return lambda: rate(ARRAYS * ARRAY.nbytes / 1e9, run)


def lock_pairs(make_lock, processes: int):
    def run():
        lock = make_lock()

        def loop():
            acquire, release = lock.acquire, lock.release
            for _ in range(PAIRS):
                acquire()
                release()

        pids = [_child(loop) for _ in range(processes - 1)]
        loop()
        _reap(pids)
        return processes * PAIRS

    return lambda: rate(PAIRS * processes, run)


def condition_ping_pong(make_condition, make_raw_value):
    """Two processes take turns: each waits on the condition for its turn, then gives
    the turn to the other and notifies (every hand-off wakes a sleeper)."""

    def run():
        cond = make_condition()
        turn = make_raw_value("i", 0)

        def side(me: int) -> None:
            for _ in range(HANDOFFS):
                with cond:
                    while turn.value != me:
                        cond.wait(timeout=30)
                    turn.value = 1 - me
                    cond.notify()

        pid = _child(lambda: side(1))
        side(0)
        _reap([pid])
        return 2 * HANDOFFS

    return lambda: rate(2 * HANDOFFS, run)


def _with_ff(variants: dict, name: str, fn) -> dict:
    if faster_fifo is not None:
        variants[name] = fn
    return variants


def main() -> None:
    bench = Bench(
        "ipc: queues, pipes and locks between processes",
        packages=["numpy", "faster-fifo"],
        rounds=ROUNDS,
        cap=60,
    )
    for producers, consumers in ((1, 1), (4, 4)):
        variants = {
            "plait Queue": small_messages(PlaitQueue, producers, consumers),
            "plait SimpleQueue": small_messages(PlaitSimpleQueue, producers, consumers),
            "multiprocessing.Queue": small_messages(_STD.Queue, producers, consumers),
            "multiprocessing.SimpleQueue": small_messages(_STD.SimpleQueue, producers, consumers),
        }
        _with_ff(variants, "faster_fifo.Queue", small_messages(_ff_queue, producers, consumers))
        bench.case(
            f"small messages, {producers} producer(s) / {consumers} consumer(s)",
            variants,
            unit="items/s",
        )
    variants = {
        "plait Queue": round_trip(PlaitQueue),
        "multiprocessing.Queue": round_trip(_STD.Queue),
    }
    _with_ff(variants, "faster_fifo.Queue", round_trip(_ff_queue))
    bench.case("queue round trip (put, echo, get)", variants, unit="s", higher_is_better=False)
    variants = {
        "plait Queue": arrays_through_queue(PlaitQueue),
        "multiprocessing.Queue": arrays_through_queue(_STD.Queue),
    }
    _with_ff(variants, "faster_fifo.Queue", arrays_through_queue(_ff_queue))
    bench.case("8 MB numpy arrays through a queue, one way", variants, unit="GB/s")
    bench.case(
        "8 MB numpy arrays through a Pipe, one way",
        {
            "plait Pipe": arrays_through_pipe(plait.ipc.Pipe),
            "multiprocessing.Pipe": arrays_through_pipe(_STD.Pipe),
        },
        unit="GB/s",
    )
    bench.case(
        "Lock acquire/release, uncontended (1 process)",
        {"plait Lock": lock_pairs(PlaitLock, 1), "multiprocessing.Lock": lock_pairs(_STD.Lock, 1)},
        unit="pairs/s",
    )
    bench.case(
        "Lock acquire/release, contended by 2 processes",
        {"plait Lock": lock_pairs(PlaitLock, 2), "multiprocessing.Lock": lock_pairs(_STD.Lock, 2)},
        unit="pairs/s",
    )
    bench.case(
        "Condition ping-pong between 2 processes",
        {
            "plait Condition": condition_ping_pong(plait.ipc.Condition, plait.ipc.RawValue),
            "multiprocessing.Condition": condition_ping_pong(_STD.Condition, _STD.RawValue),
        },
        unit="hand-offs/s",
    )
    bench.close()


if __name__ == "__main__":
    main()
