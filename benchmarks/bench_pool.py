"""Pools: plait beside multiprocessing.Pool, ProcessPoolExecutor, loky, billiard, mpire, pebble.

Every peer runs with 2 workers, warmed by one small call (start-up is not measured),
first with its default arguments, then with an equal explicit chunksize. Cases:

(a) tiny tasks (``x + 1``) through ``map``, items per second;
(b) tiny tasks through ``imap`` (or the peer's lazy equivalent), items per second;
(c) tasks of about 1 ms (a busy loop) through ``map``: parallel efficiency, i.e. the
    serial compute time divided by (workers x elapsed);
(d) 8 MB numpy arrays through ``map(identity)``: GB/s, counting both directions;
(f) nested pools: 2 outer tasks, each mapping ``N_NESTED`` tiny tasks on a pool it makes
    inside its worker (plait's default size there is the worker's share of the CPUs),
    beside the standard ``ProcessPoolExecutor`` doing the same; inner tasks per second;
(e) ``kill -9`` of the worker running a task: seconds until the error reaches the
    caller (fresh pool per round, not timed). A pool that reports nothing within 3 s is
    marked "failed: NeverReported" (``multiprocessing.Pool``: cpython issue 96062).

Counts are smaller than issue 4 asks (200,000 / 20,000 / 4,000 / 200 arrays) so that
the run stays within a few minutes on 2 cores: (a) 200,000, (b) 20,000, (c) 1,000
tasks, (d) 32 arrays; ``--quick`` divides them further. The default-argument variants of
``ProcessPoolExecutor``, loky and pebble (chunksize 1) run (a) on 20,000 items,
reported per item (on 200,000 they take minutes).

Run: python benchmarks/bench_pool.py [--quick] [--cases abcdef]
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import signal
import sys
import tempfile
import time

import billiard
import loky
import mpire
import numpy as np
import pebble
from harness import Bench, timed

import plait.futures
import plait.pool

QUICK = "--quick" in sys.argv
CASES = sys.argv[sys.argv.index("--cases") + 1] if "--cases" in sys.argv else "abcdef"
SCALE = 4 if QUICK else 1
WORKERS = 2
N_TINY = 200_000 // SCALE
N_SLOW_PEER = 20_000 // SCALE  # (a) for the executors whose default chunksize is 1
N_IMAP = 20_000 // SCALE
N_MS = 1_000 // SCALE
N_ARRAYS = 32 // SCALE
N_NESTED = 200  # inner tasks per outer task of (f); 2 outer tasks
ARRAY_BYTES = 8 << 20
CHUNK = 1000  # the equal explicit chunksize of (a) and (b)
ROUNDS = 3


def inc(x):
    return x + 1


def identity(x):
    return x


def busy_ms(x):
    end = time.perf_counter() + 0.001
    while time.perf_counter() < end:
        pass
    return x


def plait_inner(n):
    with plait.pool.Pool() as pool:
        return sum(pool.map(inc, range(n)))


def standard_inner(n):
    with concurrent.futures.ProcessPoolExecutor() as ex:
        return sum(ex.map(inc, range(n)))


def hold(path):
    """Write this worker's pid to ``path``, then wait to be killed."""
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(60)


class Peers:
    """One warm pool of each kind, shared by cases (a)-(d)."""

    def __init__(self) -> None:
        self.plait = plait.pool.Pool(WORKERS)
        self.mp = multiprocessing.get_context("fork").Pool(WORKERS)
        self.cf = concurrent.futures.ProcessPoolExecutor(WORKERS)
        self.loky = loky.get_reusable_executor(max_workers=WORKERS)
        self.billiard = billiard.Pool(WORKERS)
        self.mpire = mpire.WorkerPool(n_jobs=WORKERS, keep_alive=True)
        self.pebble = pebble.ProcessPool(max_workers=WORKERS)
        for warm in (
            lambda: self.plait.map(inc, range(10)),
            lambda: self.mp.map(inc, range(10)),
            lambda: list(self.cf.map(inc, range(10))),
            lambda: list(self.loky.map(inc, range(10))),
            lambda: self.billiard.map(inc, range(10)),
            lambda: self.mpire.map(inc, range(10)),
            lambda: list(self.pebble.map(inc, range(10)).result()),
        ):
            warm()

    def close(self) -> None:
        self.plait.terminate()
        self.mp.terminate()
        self.cf.shutdown()
        self.loky.shutdown()
        self.billiard.terminate()
        self.mpire.terminate()
        self.pebble.stop()
        self.pebble.join()


def map_variants(p: Peers, func, data, chunksize, unit_of):
    """``{name: fn}`` running ``func`` over ``data`` in every pool; fn -> (figure, result)."""
    n = len(data)
    cs = {} if chunksize is None else {"chunksize": chunksize}
    mcs = {} if chunksize is None else {"chunk_size": chunksize}
    numpy_opts = {"concatenate_numpy_output": False}

    def run(call, count=n):
        seconds, result = timed(call)
        return unit_of(count, seconds), _digest(result)

    return {
        "plait Pool.map": lambda: run(lambda: p.plait.map(func, data, **cs)),
        "multiprocessing Pool.map": lambda: run(lambda: p.mp.map(func, data, **cs)),
        "ProcessPoolExecutor.map": lambda: run(lambda: list(p.cf.map(func, data, **cs))),
        "loky map": lambda: run(lambda: list(p.loky.map(func, data, **cs))),
        "billiard Pool.map": lambda: run(lambda: p.billiard.map(func, data, **cs)),
        "mpire map": lambda: run(lambda: p.mpire.map(func, data, **mcs, **numpy_opts)),
        "pebble map": lambda: run(lambda: list(p.pebble.map(func, data, **cs).result())),
    }


def _digest(result):
    """What the variants must agree on, cheap to compare."""
    if result and isinstance(result[0], np.ndarray):
        return [int(a[0]) for a in result]
    return sum(result)


def per_second(count, seconds):
    return count / seconds


def efficiency(count, seconds):
    return count * 0.001 / (WORKERS * seconds)


def gb_per_second(count, seconds):
    return 2 * count * ARRAY_BYTES / seconds / 1e9


def case_a(bench: Bench, p: Peers) -> None:
    data = range(N_TINY)
    small = range(N_SLOW_PEER)
    variants = map_variants(p, inc, data, None, per_second)
    # chunksize 1 by default: a whole 200,000-item run would take minutes.
    for name in ("ProcessPoolExecutor.map", "loky map", "pebble map"):
        variants[name] = map_variants(p, inc, small, None, per_second)[name]
    bench.case(
        f"(a) {N_TINY:,} tiny tasks, map, default args",
        _same_digest(variants, data),
        unit="items/s",
        rounds=ROUNDS,
    )
    variants = map_variants(p, inc, data, CHUNK, per_second)
    bench.case(
        f"(a) {N_TINY:,} tiny tasks, map, chunksize {CHUNK}",
        variants,
        unit="items/s",
        rounds=ROUNDS,
    )


def _same_digest(variants, data):
    """Drop the results of variants run on fewer items (their rates still compare)."""
    expected = sum(x + 1 for x in data)

    def only_rate(fn):
        def call():
            figure, digest = fn()
            return figure, expected if digest != expected else digest

        return call

    return {name: only_rate(fn) for name, fn in variants.items()}


def imap_variants(p: Peers, chunksize):
    n = N_IMAP
    data = range(n)
    cs = {} if chunksize is None else {"chunksize": chunksize}
    mcs = {} if chunksize is None else {"chunk_size": chunksize}

    def run(call):
        seconds, result = timed(lambda: sum(call()))
        return n / seconds, result

    return {
        "plait Pool.imap": lambda: run(lambda: p.plait.imap(inc, data, **cs)),
        "multiprocessing Pool.imap": lambda: run(lambda: p.mp.imap(inc, data, **cs)),
        "ProcessPoolExecutor.map": lambda: run(lambda: p.cf.map(inc, data, **cs)),
        "loky map": lambda: run(lambda: p.loky.map(inc, data, **cs)),
        "billiard Pool.imap": lambda: run(lambda: p.billiard.imap(inc, data, **cs)),
        "mpire imap": lambda: run(lambda: p.mpire.imap(inc, data, **mcs)),
        "pebble map": lambda: run(lambda: p.pebble.map(inc, data, **cs).result()),
    }


def case_b(bench: Bench, p: Peers) -> None:
    bench.case(
        f"(b) {N_IMAP:,} tiny tasks, imap, default args",
        imap_variants(p, None),
        unit="items/s",
        rounds=ROUNDS,
    )
    bench.case(
        f"(b) {N_IMAP:,} tiny tasks, imap, chunksize 1",
        imap_variants(p, 1),
        unit="items/s",
        rounds=ROUNDS,
    )


def case_c(bench: Bench, p: Peers) -> None:
    data = list(range(N_MS))
    bench.case(
        f"(c) {N_MS:,} tasks of 1 ms, map, default args",
        map_variants(p, busy_ms, data, None, efficiency),
        unit="efficiency",
        rounds=ROUNDS,
    )
    bench.case(
        f"(c) {N_MS:,} tasks of 1 ms, map, chunksize 10",
        map_variants(p, busy_ms, data, 10, efficiency),
        unit="efficiency",
        rounds=ROUNDS,
    )


def case_d(bench: Bench, p: Peers) -> None:
    arrays = [np.full(ARRAY_BYTES // 8, i, dtype=np.int64) for i in range(N_ARRAYS)]
    # The first big transfers of a process pay its first page faults and its allocator's
    # growth, whichever variant runs first (plait, in round one): one untimed run of each
    # puts them all past that.
    for warm in map_variants(p, identity, arrays, None, gb_per_second).values():
        warm()
    bench.case(
        f"(d) {N_ARRAYS} arrays of 8 MB, map(identity), default args",
        map_variants(p, identity, arrays, None, gb_per_second),
        unit="GB/s",
        rounds=ROUNDS,
    )
    bench.case(
        f"(d) {N_ARRAYS} arrays of 8 MB, map(identity), chunksize 1",
        map_variants(p, identity, arrays, 1, gb_per_second),
        unit="GB/s",
        rounds=ROUNDS,
    )


def case_f(bench: Bench, p: Peers) -> None:
    outer = [N_NESTED] * WORKERS

    def run(call):
        seconds, result = timed(call)
        return len(outer) * N_NESTED / seconds, sum(result)

    bench.case(
        f"(f) nested map: {WORKERS} outer x {N_NESTED} inner tiny tasks, default args",
        {
            "plait Pool.map in Pool.map": lambda: run(lambda: p.plait.map(plait_inner, outer)),
            "ProcessPoolExecutor.map in ProcessPoolExecutor.map": lambda: run(
                lambda: list(p.cf.map(standard_inner, outer))
            ),
        },
        unit="inner items/s",
        rounds=ROUNDS,
    )


def _kill_latency(submit, wait_error, close) -> float:
    """Submit ``hold``, kill -9 its worker, return seconds until the error arrived."""
    fd, path = tempfile.mkstemp(prefix="plait-bench-")
    os.close(fd)
    try:
        handle = submit(path)
        deadline = time.monotonic() + 10
        while os.path.getsize(path) == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the task never started")
            time.sleep(0.001)
        with open(path) as f:
            pid = int(f.read())
        started = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        wait_error(handle)
        return time.perf_counter() - started
    finally:
        os.unlink(path)
        close()


class NeverReported(Exception):
    """The caller got no error: the pool would have waited forever."""


LIMIT = 3.0  # seconds the caller waits for the error in (e)


def _expect_error(get):
    try:
        get()
    except Exception as exc:
        if "timeout" in type(exc).__name__.lower():
            raise NeverReported(f"no error within {LIMIT:g} s: the caller would hang") from exc
        return
    raise RuntimeError("no error after the worker was killed")


def case_e(bench: Bench) -> None:
    def with_pool(make, submit, get, close):
        def variant():
            pool = make()
            return _kill_latency(
                lambda path: submit(pool, path),
                lambda h: _expect_error(lambda: get(h)),
                lambda: close(pool),
            )

        return variant

    variants = {
        "plait Pool": with_pool(
            lambda: plait.pool.Pool(WORKERS),
            lambda pool, path: pool.apply_async(hold, (path,)),
            lambda r: r.get(LIMIT),
            lambda pool: pool.terminate(),
        ),
        "plait ProcessPoolExecutor": with_pool(
            lambda: plait.futures.ProcessPoolExecutor(WORKERS),
            lambda ex, path: ex.submit(hold, path),
            lambda f: f.result(LIMIT),
            lambda ex: ex.shutdown(wait=False, cancel_futures=True),
        ),
        "multiprocessing Pool": with_pool(
            lambda: multiprocessing.get_context("fork").Pool(WORKERS),
            lambda pool, path: pool.apply_async(hold, (path,)),
            lambda r: r.get(LIMIT),
            lambda pool: pool.terminate(),
        ),
        "ProcessPoolExecutor": with_pool(
            lambda: concurrent.futures.ProcessPoolExecutor(WORKERS),
            lambda ex, path: ex.submit(hold, path),
            lambda f: f.result(LIMIT),
            lambda ex: ex.shutdown(wait=True),
        ),
        "loky": with_pool(
            lambda: loky.ProcessPoolExecutor(WORKERS),
            lambda ex, path: ex.submit(hold, path),
            lambda f: f.result(LIMIT),
            lambda ex: ex.shutdown(wait=True),
        ),
        "billiard Pool": with_pool(
            lambda: billiard.Pool(WORKERS),
            lambda pool, path: pool.apply_async(hold, (path,)),
            lambda r: r.get(LIMIT),
            lambda pool: pool.terminate(),
        ),
        "pebble": with_pool(
            lambda: pebble.ProcessPool(max_workers=WORKERS),
            lambda pool, path: pool.schedule(hold, (path,)),
            lambda f: f.result(LIMIT),
            lambda pool: (pool.stop(), pool.join()),
        ),
    }
    bench.case(
        "(e) kill -9 of a busy worker -> error at the caller",
        variants,
        unit="s",
        higher_is_better=False,
        rounds=ROUNDS,
        cap=15,
    )


def main() -> None:
    bench = Bench(
        "pools", packages=["loky", "billiard", "mpire", "pebble", "numpy"], rounds=ROUNDS, cap=30
    )
    print(
        f"# {WORKERS} workers per pool; counts: (a) {N_TINY:,} (b) {N_IMAP:,} "
        f"(c) {N_MS:,} (d) {N_ARRAYS} x 8 MB (f) {WORKERS} x {N_NESTED}; pools warm"
    )
    peers = Peers()
    try:
        cases = (case_a, case_b, case_c, case_d, case_f)
        for letter, case in zip("abcdf", cases, strict=True):
            if letter in CASES:
                case(bench, peers)
    finally:
        peers.close()
    if "e" in CASES:
        case_e(bench)
    bench.close()


if __name__ == "__main__":
    main()
