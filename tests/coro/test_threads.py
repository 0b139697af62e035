"""Coroutines meet threads: run_in_thread, UniversalQueue, UniversalEvent."""

from __future__ import annotations

import gc
import queue
import threading
import time
import weakref

import pytest

from plait import coro

pytestmark = [pytest.mark.usefixtures("no_leaks"), pytest.mark.timeout(60)]


def test_run_in_thread_returns_and_raises_without_blocking_the_kernel():
    ticked = threading.Event()

    async def ticker():
        for _ in range(3):
            await coro.sleep(0.005)
        ticked.set()

    async def main():
        await coro.spawn(ticker, daemon=True)
        # the thread waits for what only the kernel, scheduling on meanwhile, can do
        result = await coro.run_in_thread(lambda: ticked.wait(30) and "ticked")
        with pytest.raises(ZeroDivisionError):
            await coro.run_in_thread(lambda: 1 / 0)
        return result

    assert coro.run(main) == "ticked"


def test_run_in_thread_pool_is_bounded():
    active = [0]
    peak = [0]
    lock = threading.Lock()
    three_at_once = threading.Barrier(3, timeout=10)  # the bound is reached, whatever the load

    def work():
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            three_at_once.wait()  # 12 calls pass in groups of three, if three ever overlap
        except threading.BrokenBarrierError:
            pass  # fewer than three ran at once: the assertion below says so
        time.sleep(0.02)
        with lock:
            active[0] -= 1

    async def main():
        async with coro.TaskGroup() as g:
            for _ in range(12):
                await g.spawn(coro.run_in_thread, work)

    coro.run(main, max_threads=3)
    assert peak[0] == 3


def test_universal_queue_fed_by_4_threads_drained_by_100_coroutines():
    q = coro.UniversalQueue(maxsize=50)
    per_thread = 500

    def producer(base):
        for n in range(per_thread):
            q.put(base + n, timeout=30)

    async def consumer(got):
        while True:
            item = await q.get_async()
            if item is None:
                return
            got.append(item)
            q.task_done()

    async def main():
        got = []
        async with coro.TaskGroup() as g:
            for _ in range(100):
                await g.spawn(consumer, got)
            threads = [threading.Thread(target=producer, args=(k * 10_000,)) for k in range(4)]
            for t in threads:
                t.start()
            async with coro.timeout_after(30):
                await coro.run_in_thread(lambda: [t.join() for t in threads])
                await q.join_async()
            for _ in range(100):
                await q.put_async(None)
        return got

    got = coro.run(main)
    expected = sorted(k * 10_000 + n for k in range(4) for n in range(per_thread))
    assert sorted(got) == expected


def test_universal_queue_from_coroutines_to_threads_and_standard_exceptions():
    q = coro.UniversalQueue(maxsize=2)
    results = []

    def consumer():
        for _ in range(5):
            results.append(q.get(timeout=10))

    async def main():
        t = threading.Thread(target=consumer)
        t.start()
        for n in range(5):
            await q.put_async(n)  # waits (the task, not the kernel) while full
        await coro.run_in_thread(t.join, 10)

    coro.run(main)
    assert results == [0, 1, 2, 3, 4]
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)
    q.put_nowait(1)
    q.put_nowait(2)
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.01)


def test_universal_event_from_a_thread_wakes_coroutines_and_threads():
    ev = coro.UniversalEvent()
    thread_saw = []

    def waiter():
        thread_saw.append(ev.wait(timeout=10))

    async def main():
        t = threading.Thread(target=waiter)
        t.start()
        waiters = [await coro.spawn(ev.wait_async) for _ in range(10)]
        threading.Timer(0.02, ev.set).start()
        async with coro.timeout_after(10):
            for w in waiters:
                await w.join()
        await coro.run_in_thread(t.join, 10)
        return ev.is_set()

    assert coro.run(main) is True
    assert thread_saw == [True]
    assert ev.wait(timeout=0)


def test_universal_get_cancelled_by_timeout_loses_no_item():
    q = coro.UniversalQueue()

    async def main():
        async with coro.ignore_after(0.02):
            await q.get_async()
        q.put("later")
        return await q.get_async()

    assert coro.run(main) == "later"


async def until_idle(workers: int) -> None:
    """Wait until ``workers`` worker threads of the kernel's pool wait for a job."""
    pool = coro.traps.kernel().thread_pool
    deadline = coro.clock() + 10
    while True:
        await coro.sleep(0.005)  # a step of the kernel's, even if they already wait
        if pool._idle == workers:
            return
        assert coro.clock() < deadline, f"{pool._idle} idle workers, not {workers}"


def test_jobs_submitted_together_run_together_when_one_worker_is_idle():
    all_three = threading.Barrier(3, timeout=10)  # each job waits for the other two

    async def main():
        await coro.run_in_thread(int)
        await until_idle(1)
        tasks = [await coro.spawn(coro.run_in_thread, all_three.wait) for _ in range(3)]
        return sorted([await task.join() for task in tasks])

    assert coro.run(main, max_threads=16) == [0, 1, 2]


def test_an_idle_worker_keeps_no_result_alive():
    class Result:
        pass

    async def main():
        result = weakref.ref(await coro.run_in_thread(Result))
        await until_idle(1)
        gc.collect()
        return result() is None

    assert coro.run(main)


class JoinClock:
    """The pool's clock while it closes: time passes only in a join that gives up."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


def test_closing_waits_once_for_all_stuck_workers(monkeypatch, caplog):
    monkeypatch.setattr(coro.threads, "_JOIN_TIMEOUT", 0.2)
    clock = JoinClock()
    monkeypatch.setattr(coro.threads, "time", clock)
    release = threading.Event()
    all_started = threading.Barrier(4, timeout=10)  # three stuck jobs and main's call

    def stuck():
        all_started.wait()
        release.wait(30)

    def timed(worker):
        join = worker.join

        def join_on_the_clock(timeout=None):
            join(timeout)
            if worker.is_alive():
                clock.now += timeout  # it waited all it was given

        return join_on_the_clock

    async def main():
        tasks = [await coro.spawn(coro.run_in_thread, stuck) for _ in range(3)]
        await coro.run_in_thread(all_started.wait)
        workers = list(coro.traps.kernel().thread_pool._threads)
        for worker in workers:
            worker.join = timed(worker)
        for task in tasks:
            await task.cancel()  # the tasks go on; their threads stay busy
        return workers

    workers = coro.run(main)
    release.set()
    for worker in workers:
        threading.Thread.join(worker, 10)
    assert not any(worker.is_alive() for worker in workers)
    assert caplog.text.count("left behind") == 3
    assert clock.now <= 0.2  # one wait for the three, not 0.2 s each
