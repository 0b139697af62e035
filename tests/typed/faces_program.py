"""A typed program on plait's faces, written as programs use the standard modules.

``mypy --strict`` checks it (``make test``); ``tests/test_typing.py`` runs it. Each
face is imported under the standard module's name, and every call is one a program
makes on ``multiprocessing``, ``threading``, ``queue`` or ``concurrent.futures``.
"""

from __future__ import annotations

import plait.futures as futures
import plait.multiprocessing as multiprocessing
import plait.queue as queue
import plait.threading as threading
from plait.multiprocessing import shared_memory
from plait.multiprocessing.connection import Connection


def square(x: int) -> int:
    return x * x


def add(x: int, y: int) -> int:
    return x + y


def child(conn: Connection) -> None:
    conn.send(multiprocessing.current_process().name)
    conn.close()


def processes() -> list[int]:
    ctx = multiprocessing.get_context("spawn")
    here, there = multiprocessing.Pipe()
    p = ctx.Process(target=child, args=(there,), name="typed", daemon=True)
    p.start()
    there.close()
    name: str = here.recv()
    p.join(timeout=30)
    assert p.exitcode == 0 and name == "typed"
    here.close()

    with multiprocessing.Pool(2) as pool:
        squares: list[int] = pool.map(square, range(10))
        sums = pool.starmap(add, [(1, 2), (3, 4)])
        lazy = list(pool.imap_unordered(square, range(5)))
        result = pool.apply_async(square, (7,))
        assert result.get(timeout=30) == 49
    q = multiprocessing.Queue()
    q.put(5)
    assert q.get(timeout=10) == 5
    q.close()
    counter = multiprocessing.Value("i", 0)
    with counter.get_lock():
        counter.value += 1
    numbers = multiprocessing.Array("d", [1.0, 2.0])
    assert numbers[:] == [1.0, 2.0]
    event = multiprocessing.Event()
    event.set()
    assert event.wait(1)
    with multiprocessing.Manager() as manager:
        shared = manager.dict()
        shared["a"] = 1
        assert dict(shared) == {"a": 1}
    block = shared_memory.SharedMemory(create=True, size=16)
    try:
        block.buf[:2] = b"hi"
    finally:
        block.close()
        block.unlink()
    assert multiprocessing.cpu_count() >= 1
    return squares + sums + lazy


def threads() -> int:
    results: queue.Queue[int] = queue.Queue(maxsize=10)
    lock = threading.Lock()
    done = threading.Event()
    total = 0

    def work(n: int) -> None:
        nonlocal total
        with lock:
            total += n
        results.put(n)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=10)
    timer = threading.Timer(0.01, done.set)
    timer.start()
    assert done.wait(10)
    timer.join(10)
    seen: list[int] = sorted(results.get(timeout=1) for _ in range(4))
    try:
        results.get_nowait()
    except queue.Empty:
        pass
    condition = threading.Condition()
    with condition:
        condition.notify_all()
    local = threading.local()
    local.x = 1
    assert threading.current_thread() is threading.main_thread()
    return total + sum(seen)


def executors() -> list[int]:
    with futures.ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [pool.submit(square, n) for n in range(4)]
        done = [f.result(timeout=10) for f in futures.as_completed(jobs, timeout=30)]
    with futures.ProcessPoolExecutor(max_workers=2) as pool:
        mapped = list(pool.map(square, range(4), timeout=30))
        first = pool.submit(add, 1, 2)
        finished, _ = futures.wait([first], timeout=30)
        assert first in finished
    return sorted(done) + mapped


if __name__ == "__main__":
    print(sum(processes()), threads(), sum(executors()))
