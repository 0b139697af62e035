"""Managers: plait's ``Manager()`` beside the standard library's, in one run.

Cases (each manager is started once, before the first round: warm):
- managed dict, ``d[k] = v`` then ``d[k]``, from this process (1 client) and from 4
  client processes at once (forked before the timing starts; each waits for "go");
- managed queue, ``q.put(x)`` then ``q.get()``, from 1 and from 4 clients;
- many small writes at once: ``d.update(mapping)`` of 1,000 keys (one request and one
  reply on both: pickling and unpickling the 1,000 pairs, ~160 of its ~180 µs of work,
  is the same on both sides, so expect ~1x), and 1,000 ``d[k] = v`` in a
  ``plait.managers.batch()`` block beside the same 1,000 writes one by one on the
  standard library (it has no batching);
- the managed dict again from 1 client, over a TCP address (127.0.0.1): the path of
  clients on other machines, which never use the rings.

Every variant checks what the server holds afterwards (outside the timed region); the
figures are operations per second (a set and a get count as two).

What the server's design was measured to save (2-core VM):
- before the rings, 4 client processes each doing ``d[k] = v; d[k]`` (``perf stat`` and
  cProfile): per call the server's loop spent ~12 µs of CPU (``poll``, ``recv``,
  ``send``), each client ~11-14 µs; the standard library ~21 µs in its server threads
  and ~20 µs in each client. Five processes on two cores: CPU-bound, so the system calls
  were the cost to cut;
- with the rings: 1 client ~66k to ~160k operations per second, 4 clients ~60k to
  ~150k, 5-8x the standard library;
- the loop serving every ready connection, against a thread per connection (4 client
  processes on one dict; 1 client on a queue, loaded VM): per-round ratios 0.7 to 2,
  medians ~1.1;
- ``m.Queue()`` handing its creator's connection to a thread for good (before the
  creation ran in a thread once and gave the connection back): every later call of that
  client cost ~5x more.

Run: python benchmarks/bench_managers.py [--quick]
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.managers
import sys
import time

from harness import Bench

import plait.managers

QUICK = "--quick" in sys.argv
ROUNDS = 3 if QUICK else 5
OPS = 2000 if QUICK else 5000
CLIENTS = 4
KEYS = 100


def dict_work(d, start: int, count: int) -> None:
    for i in range(start, start + count):
        k = i % KEYS
        d[k] = i
        d[k]


def queue_work(q, count: int) -> None:
    for i in range(count):
        q.put(i)
        q.get()


def client(work, args, go, done) -> None:
    """A client process: wait for "go", run the work, say when it finished."""
    go.recv()
    work(*args)
    done.send(time.perf_counter())


def one_client_dict(d):
    def run():
        d.clear()
        t0 = time.perf_counter()
        dict_work(d, 0, OPS)
        rate = 2 * OPS / (time.perf_counter() - t0)
        return rate, sorted(d.items())

    return run


def one_client_queue(q):
    def run():
        t0 = time.perf_counter()
        queue_work(q, OPS)
        rate = 2 * OPS / (time.perf_counter() - t0)
        return rate, q.qsize()

    return run


def many_clients(make_args, work, check):
    """``CLIENTS`` forked processes run ``work`` at once; ops/s from "go" to the last end."""
    ctx = multiprocessing.get_context("fork")

    def run():
        per = OPS // CLIENTS
        pipes, procs = [], []
        for c in range(CLIENTS):
            go_r, go_w = ctx.Pipe(False)
            done_r, done_w = ctx.Pipe(False)
            p = ctx.Process(target=client, args=(work, make_args(c, per), go_r, done_w))
            p.start()
            pipes.append((go_w, done_r))
            procs.append(p)
        time.sleep(0.2)  # let them settle: their start is not what is measured
        t0 = time.perf_counter()
        for go_w, _ in pipes:
            go_w.send(None)
        end = max(done_r.recv() for _, done_r in pipes)
        for p in procs:
            p.join(30)
        return 2 * per * CLIENTS / (end - t0), check()

    return run


def update_case(d):
    mapping = {i: str(i) for i in range(1000)}

    def run():
        d.clear()
        t0 = time.perf_counter()
        d.update(mapping)
        rate = len(mapping) / (time.perf_counter() - t0)
        return rate, len(d)

    return run


def writes_batched(d):
    def run():
        d.clear()
        t0 = time.perf_counter()
        with plait.managers.batch():
            for i in range(1000):
                d[i] = i
        rate = 1000 / (time.perf_counter() - t0)
        return rate, len(d)

    return run


def writes_one_by_one(d):
    def run():
        d.clear()
        t0 = time.perf_counter()
        for i in range(1000):
            d[i] = i
        rate = 1000 / (time.perf_counter() - t0)
        return rate, len(d)

    return run


def main() -> None:
    bench = Bench("managers: plait.managers.Manager vs multiprocessing.Manager", rounds=ROUNDS)
    pm = plait.managers.Manager()
    sm = multiprocessing.Manager()
    try:
        pd, sd = pm.dict(), sm.dict()
        pq, sq = pm.Queue(), sm.Queue()
        bench.case(
            "dict d[k]=v, d[k]: 1 client",
            {"plait": one_client_dict(pd), "multiprocessing": one_client_dict(sd)},
        )
        bench.case(
            f"dict d[k]=v, d[k]: {CLIENTS} client processes",
            {
                "plait": many_clients(
                    lambda c, per: (pd, c * per, per), dict_work, lambda: len(pd)
                ),
                "multiprocessing": many_clients(
                    lambda c, per: (sd, c * per, per), dict_work, lambda: len(sd)
                ),
            },
        )
        bench.case(
            "queue put, get: 1 client",
            {"plait": one_client_queue(pq), "multiprocessing": one_client_queue(sq)},
        )
        bench.case(
            f"queue put, get: {CLIENTS} client processes",
            {
                "plait": many_clients(lambda c, per: (pq, per), queue_work, pq.qsize),
                "multiprocessing": many_clients(lambda c, per: (sq, per), queue_work, sq.qsize),
            },
        )
        bench.case(
            "d.update(1,000 keys)",
            {"plait": update_case(pd), "multiprocessing": update_case(sd)},
            unit="keys/s",
        )
        bench.case(
            "1,000 d[k]=v: plait batch() vs one by one",
            {
                "plait batch()": writes_batched(pd),
                "plait one by one": writes_one_by_one(pd),
                "multiprocessing": writes_one_by_one(sd),
            },
            unit="writes/s",
        )
        # The path of clients on other machines: a TCP address (here 127.0.0.1), no rings.
        ptcp = plait.managers.SyncManager(address=("127.0.0.1", 0), authkey=b"bench")
        stcp = multiprocessing.managers.SyncManager(address=("127.0.0.1", 0), authkey=b"bench")
        ptcp.start()
        stcp.start()
        try:
            bench.case(
                "dict d[k]=v, d[k] over TCP (127.0.0.1): 1 client",
                {
                    "plait": one_client_dict(ptcp.dict()),
                    "multiprocessing": one_client_dict(stcp.dict()),
                },
            )
        finally:
            ptcp.shutdown()
            stcp.shutdown()
    finally:
        pm.shutdown()
        sm.shutdown()
    bench.close()


if __name__ == "__main__":
    main()
