"""Coroutines meet threads: run_in_thread, UniversalQueue, UniversalEvent."""

from __future__ import annotations

import queue
import threading
import time

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
