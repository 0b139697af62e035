"""``python -m plait demo`` tours what works; ``python -m plait bench`` runs the benchmarks
(``bench --report DIR`` draws the charts of the results they wrote, see ``plait.bench_report``);
``python -m plait run script.py|-m module [args...]`` runs a program under ``patch()``
(see ``plait.run``)."""

from __future__ import annotations

import argparse
import os
import pathlib
import signal
import subprocess
import sys
import time


def _section(title: str):
    print(f"\n== {title}")
    return time.perf_counter()


def _done(t0: float, what: str) -> None:
    print(f"   {what} in {(time.perf_counter() - t0) * 1e3:.1f} ms")


def demo_serialization() -> None:
    from plait._core import serialization

    t0 = _section("serialization: pickle 5, cloudpickle when pickle refuses")
    offset = 10
    f = serialization.loads(serialization.dumps(lambda x: x + offset))
    print(f"   a closure pickled and rebuilt: f(32) = {f(32)}")
    _done(t0, "done")


def demo_threads() -> None:
    import queue as std_queue
    import threading as std_threading
    import warnings

    from plait import queue, threading, threads

    t0 = _section("threads: results that are not lost, C-engine queues, lock-order checker")
    hook, std_threading.excepthook = std_threading.excepthook, lambda args: None  # quiet
    try:
        t = threading.Thread(target=lambda: 1 / 0)
        t.start()
        try:
            t.result(timeout=5)
        except ZeroDivisionError as exc:
            print(f"   a thread's exception, re-raised by result(): {exc!r}")
    finally:
        std_threading.excepthook = hook

    q = queue.Queue(maxsize=100)
    consumer = threading.Thread(target=lambda: sum(iter(q.get, None)))
    consumer.start()
    for i in range(100_000):
        q.put(i)
    q.put(None)
    print(f"   100,000 items through a bounded Queue: sum = {consumer.result(timeout=30)}")
    q.shutdown()
    try:
        q.put(1)
    except queue.ShutDown:
        print("   after shutdown(), put() raises ShutDown")

    for mod in (queue, std_queue):
        sq = mod.Queue()
        start = time.perf_counter()
        for i in range(200_000):
            sq.put(i)
        for _ in range(200_000):
            sq.get()
        rate = 200_000 / (time.perf_counter() - start)
        print(f"   {mod.__name__}.Queue put+get in one thread: {rate / 1e6:.2f}M items/s")

    def take(first, second):
        with first, second:
            pass

    threads.check_lock_order(True)
    try:
        a, b = threading.Lock(), threading.Lock()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for pair in ((a, b), (b, a)):  # opposite orders, in threads that never overlap
                worker = threading.Thread(target=take, args=pair)
                worker.start()
                worker.result(timeout=5)
        print(f"   lock-order checker: {len(caught)} potential deadlock reported, no hang")
    finally:
        threads.check_lock_order(False)
    _done(t0, "done")


def demo_process() -> None:
    import plait.process

    t0 = _section("processes: fork, spawn, forkserver; exit codes, signals and lambdas")
    print(f"   cpu_count() = {plait.process.cpu_count()} (affinity mask and cgroup quota)")
    for method in plait.process.get_all_start_methods():
        ctx = plait.process.get_context(method)
        start = time.perf_counter()
        p = ctx.Process(target=sys.exit, args=(7,))
        p.start()
        p.join(30)
        ms = (time.perf_counter() - start) * 1e3
        q = ctx.Process(target=lambda n=len(method): sys.exit(n), daemon=True)
        q.start()
        q.join(30)
        r = ctx.Process(target=time.sleep, args=(60,), daemon=True)
        r.start()
        r.terminate()
        r.join(30)
        print(
            f"   {method:>10}: sys.exit(7) -> {p.exitcode} ({ms:.1f} ms), "
            f"a lambda -> {q.exitcode}, terminate() -> {r.exitcode}"
        )
        for proc in (p, q, r):
            proc.close()
    _done(t0, "done")


def _put_numbers(q, n) -> None:
    for i in range(n):
        q.put(i)


def _die_holding(lock) -> None:
    lock.acquire()
    os.kill(os.getpid(), signal.SIGKILL)


def _add(counter) -> None:
    for _ in range(1000):
        with counter.get_lock():
            counter.value += 1


def demo_shared() -> None:
    try:
        import numpy as np
    except ImportError:  # not a dependency of plait: the array line is left out
        np = None

    from plait.ipc import Lock, OwnerDiedError, Queue, Value
    from plait.ipc.shared_memory import SharedMemory
    from plait.process import get_context

    ctx = get_context("fork")
    t0 = _section("cross-process queue, locks and shared memory (futex words in memfds)")
    q = Queue()
    child = ctx.Process(target=_put_numbers, args=(q, 100_000))
    start = time.perf_counter()
    child.start()
    child.join(30)  # joined before a single item was read: no feeder-thread deadlock
    total = sum(q.get(timeout=10) for _ in range(100_000))
    ms = (time.perf_counter() - start) * 1e3
    print(f"   100,000 ints from a child that exited first: sum {total} in {ms:.0f} ms")
    if np is not None:
        big = np.arange(1_000_000, dtype=np.float64)
        q.put(big)
        equal = np.array_equal(q.get(timeout=10), big)
        print(f"   an 8 MB array through the queue: equal = {equal}")
    else:
        print("   (numpy is not installed: the 8 MB array through the queue is left out)")
    lock = Lock()
    victim = ctx.Process(target=_die_holding, args=(lock,))
    victim.start()
    victim.join(30)
    try:
        lock.acquire(timeout=10)
    except OwnerDiedError as exc:
        print(f"   lock held by killed pid {exc.pid}: OwnerDiedError, lock freed")
    with lock:
        pass
    counter = Value("i", 0)
    workers = [ctx.Process(target=_add, args=(counter,)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    print(f"   4 processes x 1,000 locked increments of a shared Value: {counter.value}")
    block = SharedMemory(create=True, size=16)
    block.buf[:5] = b"plait"
    other = SharedMemory(block.name)
    print(f"   SharedMemory {block.name!r} attached by name: {bytes(other.buf[:5])!r}")
    other.close()
    block.close()
    _done(t0, "done")


def demo_pool() -> None:
    import concurrent.futures
    import itertools
    import signal

    import plait.futures
    from plait.pool import Pool, WorkerLostError

    t0 = _section("pools: a killed worker fails only its task; per-task timeouts; lazy imap")
    with Pool(2) as pool:
        offset = 1
        print(f"   map(lambda) = {pool.map(lambda x: x + offset, range(5))}")
        doomed = pool.apply_async(lambda: os.kill(os.getpid(), signal.SIGKILL))
        others = [pool.apply_async(pow, (2, n)) for n in range(8)]
        try:
            doomed.get(10)
        except WorkerLostError as exc:
            print(f"   kill -9: {exc}")
        print(f"   the other tasks: {[r.get(10) for r in others]}")
        try:
            pool.apply(time.sleep, (60,), timeout=0.2)
        except TimeoutError as exc:
            print(f"   timeout=0.2: {exc}")
        squares = pool.imap(lambda x: x * x, itertools.count())  # endless, read lazily
        print(f"   imap over itertools.count(): {[next(squares) for _ in range(5)]}")
        stats = pool.stats()
        print(
            f"   stats: {stats.tasks_done} done, {stats.tasks_failed} failed, "
            f"{stats.workers_replaced} workers replaced"
        )
    with plait.futures.ProcessPoolExecutor(2) as ex:
        futures = [ex.submit(divmod, 17, n) for n in (1, 2, 3)]
        done = sorted(f.result() for f in concurrent.futures.as_completed(futures))
        print(f"   ProcessPoolExecutor + as_completed: {done}")
    _done(t0, "done")


def _square(x: int) -> int:
    return x * x


def _put_from_child(queue, lock) -> None:
    with lock:
        queue.put("a standard queue, from a plait child")


def demo_dropin() -> None:
    import concurrent.futures
    import multiprocessing
    import multiprocessing.context

    import plait.multiprocessing as mp
    from plait.multiprocessing import dummy, util

    t0 = _section("drop-in: the standard submodules, identity, the standard module's objects")
    ctx = mp.get_context("spawn")
    print(
        f"   isinstance(ctx, multiprocessing.context.BaseContext) = "
        f"{isinstance(ctx, multiprocessing.context.BaseContext)}"
    )
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as executor:
        squares = list(executor.map(pow, range(6), [2] * 6))  # by reference, as it pickles
        print(f"   the standard ProcessPoolExecutor on plait's spawn context: {squares}")
    with dummy.Pool(2) as pool:
        print(f"   multiprocessing.dummy.Pool (plait's ThreadPool): {pool.map(_square, range(6))}")
    std = multiprocessing.get_context("fork")
    queue, lock = std.Queue(), std.Lock()
    child = mp.get_context("fork").Process(target=_put_from_child, args=(queue, lock))
    child.start()
    got = queue.get(timeout=30)
    child.join(30)
    print(f"   {got} (exit code {child.exitcode})")
    print(f"   util.SUBWARNING = {util.SUBWARNING}, util.get_temp_dir() = {util.get_temp_dir()}")
    _done(t0, "done")


def _echo(conn) -> None:
    while (msg := conn.recv()) is not None:
        conn.send(msg)


def demo_ipc() -> None:
    import threading

    from plait import ipc
    from plait.process import get_context

    t0 = _section("ipc: Pipe to a child, wait(), Listener/Client with two-way HMAC auth")
    here, there = ipc.Pipe()
    child = get_context("fork").Process(target=_echo, args=(there,))
    child.start()
    there.close()
    n = 2000
    t1 = time.perf_counter()
    for i in range(n):
        here.send(i)
        here.recv()
    print(f"   {n} round trips to a child: {(time.perf_counter() - t1) / n * 1e6:.1f} µs each")
    big = bytearray(8 << 20)
    t1 = time.perf_counter()
    here.send(big)
    assert here.recv() == big
    print(f"   8 MB there and back in {(time.perf_counter() - t1) * 1e3:.1f} ms")
    here.send(None)
    seen = ipc.wait([child.sentinel], 10) != []
    print(f"   wait() sees the child's sentinel when it exits: {seen}")
    child.join(10)
    here.close()
    with ipc.Listener(("127.0.0.1", 0), authkey=b"secret", handshake_timeout=2) as listener:
        refused = []

        def serve():
            for _ in range(2):
                try:
                    with listener.accept() as conn:
                        conn.send(("hello", conn.recv()))
                except ipc.AuthenticationError as exc:
                    refused.append(exc)

        server = threading.Thread(target=serve)
        server.start()
        try:
            ipc.Client(listener.address, authkey=b"wrong")
        except ipc.AuthenticationError as exc:
            print(f"   client with the wrong key: {exc}")
        with ipc.Client(listener.address, authkey=b"secret") as conn:
            conn.send("right key")
            print(f"   client with the right key got {conn.recv()!r}")
        server.join(10)
    print(f"   the server refused the first client: {refused[0]}")
    _done(t0, "done")


def demo_coro() -> None:
    import functools
    import resource
    import threading

    from plait import coro

    t0 = _section("coroutines: 1,000 connections in one thread, timeouts, threads meet tasks")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2200 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (2200, hard))
        soft = 2200
    clients = 1000 if soft >= 2200 else 300

    async def echo(client, address):
        async with client.as_stream() as stream:
            async for line in stream:
                await stream.write(line)

    async def client(port, n):
        sock = await coro.open_connection("127.0.0.1", port)
        async with sock.as_stream() as stream:
            for r in range(5):
                await stream.write(b"%d %d\n" % (n, r))
                assert await stream.readline() == b"%d %d\n" % (n, r)
        return 5

    async def main():
        listener = coro.tcp_server_socket("127.0.0.1", 0)
        port = listener.getsockname()[1]
        server = await coro.spawn(functools.partial(coro.serve, listener, echo))
        async with coro.timeout_after(30), coro.TaskGroup() as group:
            for n in range(clients):
                await group.spawn(client, port, n)
        lines = sum(t.result for t in group.tasks)
        print(f"   {lines} lines echoed over {clients} connections, one thread")
        await server.cancel()
        async with coro.ignore_after(0.05) as scope:
            await coro.sleep(10)
        print(f"   ignore_after(0.05) around sleep(10): expired={scope.expired}")
        q = coro.UniversalQueue()

        def produce():
            for n in range(25):
                q.put(n)

        threads = [threading.Thread(target=produce) for _ in range(4)]
        for t in threads:
            t.start()
        got = [await q.get_async() for _ in range(100)]
        await coro.run_in_thread(lambda: [t.join() for t in threads])
        print(f"   a UniversalQueue fed by 4 threads gave {len(got)} items to a task")

    coro.run(main)
    _done(t0, "done")


def demo_cluster() -> None:
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        print("\n== the same Pool on a Dask cluster: skipped (pip install 'plait[dask]')")
        return
    from plait.pool import Pool

    t0 = _section("the same Pool on a Dask cluster (a LocalCluster of 2 workers)")
    with Pool(2, backend="dask") as pool:
        print(f"   map, in order: {pool.map(abs, range(-3, 3))}")
        total = sum(pool.map(abs, range(20_000)))
        print(f"   20,000 tiny tasks, batched into a few Dask tasks: sum {total}")
    _done(t0, "cluster started, used and stopped")


def demo_managers() -> None:
    import os
    import signal

    from plait import multiprocessing as mp
    from plait.managers import ManagerGoneError, SyncManager, batch

    t0 = _section("managers: shared objects, one round trip per call, batch(), dead clients")
    ctx = mp.get_context("fork")
    with SyncManager(ctx=ctx, authkey=b"demo") as m:
        d, lock = m.dict(), m.Lock()
        children = [ctx.Process(target=_count, args=(d, lock)) for _ in range(8)]
        for p in children:
            p.start()
        for p in children:
            p.join(30)
        print(f"   a managed dict counted to {d['n']} by 8 children")
        with batch():
            for i in range(1000):
                d[i] = i
        print(f"   1,000 writes in one batch() round trip: the dict holds {len(d)} keys")
        victim = ctx.Process(target=_hold_and_hang, args=(m.address, b"demo"))
        victim.start()
        time.sleep(0.3)
        held = m._number_of_objects()
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(10)
        time.sleep(0.1)
        print(
            f"   a client SIGKILLed mid-call: objects {held} -> {m._number_of_objects()}, "
            f"the others kept working ({len(d)} keys)"
        )
    try:
        d["n"]
    except ManagerGoneError as exc:
        print(f"   after shutdown: {type(exc).__name__}: {exc}"[:100])
    _done(t0, "done")


def _count(d, lock) -> None:
    for _ in range(50):
        with lock:
            d["n"] = d.get("n", 0) + 1


def _hold_and_hang(address, authkey) -> None:
    from plait.managers import SyncManager

    m = SyncManager(address=address, authkey=authkey)
    m.connect()
    mine = m.list(range(100))
    m.Event().wait(60)  # sits in a call on the server until killed
    del mine


def demo_run_in_process() -> None:
    from plait import coro

    t0 = _section("coroutines meet processes: CPU work off the kernel; a timeout kills the worker")

    async def main():
        total = await coro.run_in_process(sum, range(10**6))
        print(f"   run_in_process(sum, range(10**6)) = {total} (kernel pid {os.getpid()})")
        try:
            async with coro.timeout_after(0.5):
                await coro.run_in_process(time.sleep, 60)
        except coro.TaskTimeout:
            print("   time.sleep(60) in a worker: timed out after 0.5 s, the worker was killed")
        pid = await coro.run_in_process(os.getpid)
        print(f"   the pool goes on: the next call ran in worker {pid}")

    coro.run(main)
    _done(t0, "done")


DEMOS = [
    demo_serialization,
    demo_process,
    demo_ipc,
    demo_shared,
    demo_pool,
    demo_dropin,
    demo_cluster,
    demo_managers,
    demo_threads,
    demo_coro,
    demo_run_in_process,
]


def demo() -> int:
    print(f"plait demo on Python {sys.version.split()[0]}, {len(os.sched_getaffinity(0))} cores")
    t0 = time.perf_counter()
    for section in DEMOS:
        section()
    print(f"\nthe whole tour took {(time.perf_counter() - t0):.2f} s")
    return 0


BENCH_CAP = 900  # seconds a whole benchmark script may take before it is stopped


def bench(names: list[str], options: list[str]) -> int:
    here = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
    scripts = sorted(here.glob("bench_*.py"))
    if names:
        scripts = [s for s in scripts if any(n in s.stem for n in names)]
    if not scripts:
        print(f"no benchmarks found under {here}", file=sys.stderr)
        return 1
    status = 0
    for script in scripts:
        print(f"\n### {script.name}", flush=True)
        try:
            status |= subprocess.run(
                [sys.executable, str(script), *options], timeout=BENCH_CAP
            ).returncode
        except subprocess.TimeoutExpired:
            print(f"### {script.name}: over its cap of {BENCH_CAP} s, stopped", flush=True)
            status = 1
    return status


def report(directory: str) -> int:
    from plait.bench_report import ReportError, write_report  # noqa: PLC0415 - only here

    try:
        made = write_report(directory)
    except ReportError as exc:
        print(f"python -m plait bench --report: {exc}", file=sys.stderr)
        return 1
    for path in made:
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run"]:  # the program's arguments are its own: no parsing here
        from plait.run import run_program  # noqa: PLC0415 - only for this command

        return run_program(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m plait")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="a short tour that runs real work through plait")
    b = sub.add_parser(
        "bench",
        help="run the benchmarks (the bench extra), or chart their results (the docs extra)",
    )
    b.add_argument("names", nargs="*", help="only the benchmarks whose name contains these")
    b.add_argument("--quick", action="store_true", help="the shorter runs of each benchmark")
    b.add_argument("--json", metavar="DIR", help="write the results to DIR/<bench>.json")
    b.add_argument(
        "--report",
        metavar="DIR",
        help="run nothing: draw DIR/charts/ and DIR/report.md from the results in DIR/*.json",
    )
    sub.add_parser("run", help="run: python -m plait run script.py|-m module [args...]")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo()
    if args.report is not None:
        if args.names or args.quick or args.json:
            parser.error("--report runs no benchmark: it takes no names, --quick or --json")
        return report(args.report)
    options = ["--quick"] * args.quick + (["--json", args.json] if args.json else [])
    return bench(args.names, options)


if __name__ == "__main__":
    sys.exit(main())
