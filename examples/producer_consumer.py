"""Producers and consumers in separate processes, over plait queues, with a clean shutdown.

    python examples/producer_consumer.py                  # 2 producers, 2 consumers
    python examples/producer_consumer.py --producers 4 --consumers 3 --limit 200000

The producers put the numbers below ``--limit`` on a bounded ``Queue`` (a full queue
makes them wait: the consumers set the pace); the consumers take them, test each for
primality, and report how many primes they saw on a second queue. The shutdown is the
part programs get wrong, so it follows a fixed order:

1. join the producers: once they are done, every number is in the work queue;
2. put one ``STOP`` per consumer: being last in a FIFO queue, each comes after every
   number, and each consumer takes exactly one and returns;
3. read every consumer's report *before* joining the consumers (a process that still
   has items to hand over should not be waited for by the one that must take them);
4. join the consumers. If anything fails or takes too long, the ``finally`` kills the
   processes still running, so none outlives the program.

Every blocking call has a timeout, so a dead process shows up as an error, not a hang.
"""

from __future__ import annotations

import argparse
import math
import queue
import sys
import time
from typing import NamedTuple

import plait.multiprocessing as mp

STOP = None  # the end-of-work marker: one per consumer
TIMEOUT = 30.0  # seconds any single wait may take before the program gives up


def produce(work: mp.Queue, first: int, step: int, limit: int) -> None:
    """Put ``first, first + step, ...`` below ``limit`` on ``work``."""
    for n in range(first, limit, step):
        work.put(n, timeout=TIMEOUT)


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    return all(n % d for d in range(2, math.isqrt(n) + 1))


class Report(NamedTuple):
    """What a consumer tells the parent when it stops."""

    consumer: str
    seen: int
    primes: int


def consume(work: mp.Queue, reports: mp.Queue, name: str) -> None:
    """Test numbers from ``work`` until ``STOP``; then put a ``Report`` on ``reports``."""
    seen = primes = 0
    while (n := work.get(timeout=TIMEOUT)) is not STOP:
        seen += 1
        primes += is_prime(n)
    reports.put(Report(name, seen, primes), timeout=TIMEOUT)


def count_primes(limit: int) -> int:
    """The primes below ``limit``, by a sieve in this process: the answer to check."""
    sieve = bytearray([1]) * max(limit, 2)
    sieve[0] = sieve[1] = 0
    for d in range(2, math.isqrt(limit) + 1):
        if sieve[d]:
            sieve[d * d :: d] = bytes(len(sieve[d * d :: d]))
    return sum(sieve[:limit])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=20_000, help="numbers below this")
    args = parser.parse_args(argv)

    work: mp.Queue = mp.Queue(maxsize=1000)
    reports: mp.Queue = mp.Queue()
    producers = [
        mp.Process(target=produce, args=(work, k, args.producers, args.limit), name=f"producer-{k}")
        for k in range(args.producers)
    ]
    consumers = [
        mp.Process(target=consume, args=(work, reports, f"consumer-{k}"), name=f"consumer-{k}")
        for k in range(args.consumers)
    ]
    t0 = time.perf_counter()
    try:
        for p in producers + consumers:
            p.start()
        for p in producers:  # 1.
            p.join(TIMEOUT)
            if p.exitcode != 0:
                raise RuntimeError(f"{p.name} ended with exit code {p.exitcode}")
        for _ in consumers:  # 2.
            work.put(STOP, timeout=TIMEOUT)
        results: list[Report] = [reports.get(timeout=TIMEOUT) for _ in consumers]  # 3.
        for p in consumers:  # 4.
            p.join(TIMEOUT)
            if p.exitcode != 0:
                raise RuntimeError(f"{p.name} ended with exit code {p.exitcode}")
    except queue.Empty:
        print("a consumer did not report in time", file=sys.stderr)
        return 1
    finally:
        for p in producers + consumers:
            if p.is_alive():
                p.kill()
                p.join(TIMEOUT)
        work.close()
        reports.close()
    elapsed = time.perf_counter() - t0

    for report in sorted(results):
        print(f"{report.consumer}: tested {report.seen} numbers, {report.primes} primes")
    seen = sum(r.seen for r in results)
    primes = sum(r.primes for r in results)
    expected = count_primes(args.limit)
    print(
        f"{args.producers} producers, {args.consumers} consumers: {seen} numbers in {elapsed:.2f} s"
    )
    print(f"primes below {args.limit}: {primes} (a sieve says {expected})")
    if seen != args.limit or primes != expected:
        print("MISMATCH: numbers were lost or counted twice", file=sys.stderr)
        return 1
    print("every number was consumed once; all processes ended with exit code 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
