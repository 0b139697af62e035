"""Locks, events, semaphores, conditions and queues for tasks."""

from __future__ import annotations

import queue

import pytest

from plait import coro

pytestmark = [pytest.mark.usefixtures("no_leaks"), pytest.mark.timeout(30)]


def test_lock_is_mutually_exclusive_and_fair():
    order = []

    async def worker(lock, n):
        async with lock:
            order.append(("in", n))
            await coro.sleep(0.001)
            order.append(("out", n))

    async def main():
        lock = coro.Lock()
        async with coro.TaskGroup() as g:
            for n in range(4):
                await g.spawn(worker, lock, n)
        assert not lock.locked()
        with pytest.raises(RuntimeError, match="does not hold"):
            lock.release()

    coro.run(main)
    assert order == [(w, n) for n in range(4) for w in ("in", "out")]


def test_a_cancelled_lock_waiter_does_not_keep_the_lock():
    async def main():
        lock = coro.Lock()
        await lock.acquire()
        waiter = await coro.spawn(lock.acquire)
        await coro.sleep(0)
        await waiter.cancel()
        lock.release()
        return lock.locked()

    assert coro.run(main) is False


def test_event_wakes_every_waiter():
    async def main():
        ev = coro.Event()
        tasks = [await coro.spawn(ev.wait) for _ in range(5)]
        await coro.sleep(0)
        assert not any(t.terminated for t in tasks)
        ev.set()
        for t in tasks:
            await t.join()
        await ev.wait()  # already set: returns at once
        return ev.is_set()

    assert coro.run(main) is True


def test_semaphore_bounds_concurrency_and_bounded_semaphore_checks_release():
    running = [0]
    peak = [0]

    async def worker(sem):
        async with sem:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            await coro.sleep(0.001)
            running[0] -= 1

    async def main():
        sem = coro.Semaphore(3)
        async with coro.TaskGroup() as g:
            for _ in range(10):
                await g.spawn(worker, sem)
        bounded = coro.BoundedSemaphore(1)
        await bounded.acquire()
        bounded.release()
        with pytest.raises(ValueError, match="more than its 1"):
            bounded.release()

    coro.run(main)
    assert peak[0] == 3


def test_condition_wait_notify():
    async def consumer(cond, items, got):
        async with cond:
            await cond.wait_for(lambda: items)
            got.append(items.pop())

    async def main():
        cond = coro.Condition()
        items, got = [], []
        tasks = [await coro.spawn(consumer, cond, items, got) for _ in range(3)]
        for n in range(3):
            await coro.sleep(0.001)
            async with cond:
                items.append(n)
                cond.notify()
        for t in tasks:
            await t.join()
        with pytest.raises(RuntimeError, match="lock held"):
            cond.notify()
        return sorted(got)

    assert coro.run(main) == [0, 1, 2]


def test_cancelled_condition_waiter_gets_the_lock_back_before_leaving():
    async def waiter(cond, seen):
        async with cond:
            try:
                await cond.wait()
            finally:
                seen.append(cond.locked())

    async def main():
        cond = coro.Condition()
        seen = []
        t = await coro.spawn(waiter, cond, seen)
        await coro.sleep(0)
        await t.cancel()
        return seen, cond.locked()

    assert coro.run(main) == ([True], False)


# -- queues: the same scenario on the standard queue and on plait's ---------------------

KINDS = [
    ("Queue", [3, 1, 2]),
    ("LifoQueue", [2, 1, 3]),
    ("PriorityQueue", [1, 2, 3]),
]


def _nowait_scenario(q):
    for item in (3, 1, 2):
        q.put_nowait(item)
    with pytest.raises(queue.Full):
        q.put_nowait(4)
    got = [q.get_nowait() for _ in range(3)]
    with pytest.raises(queue.Empty):
        q.get_nowait()
    return got, q.empty(), q.qsize()


@pytest.mark.parametrize("kind,expected", KINDS)
def test_queue_order_and_standard_exceptions_match_the_standard_module(kind, expected):
    std = _nowait_scenario(getattr(queue, kind)(maxsize=3))

    async def main():
        return _nowait_scenario(getattr(coro, kind)(maxsize=3))

    assert coro.run(main) == std == (expected, True, 0)


def test_queue_producers_and_consumers_with_backpressure_and_join():
    async def producer(q, base):
        for n in range(50):
            await q.put(base + n)

    async def consumer(q, got):
        while True:
            item = await q.get()
            got.append(item)
            q.task_done()

    async def main():
        q = coro.Queue(maxsize=2)
        got = []
        consumers = [await coro.spawn(consumer, q, got, daemon=True) for _ in range(3)]
        async with coro.TaskGroup() as g:
            for base in (0, 1000):
                await g.spawn(producer, q, base)
        async with coro.timeout_after(10):
            await q.join()
        for c in consumers:
            await c.cancel()
        return sorted(got)

    assert coro.run(main) == sorted(list(range(50)) + list(range(1000, 1050)))


def test_a_getter_chosen_for_an_item_keeps_it_even_if_cancelled():
    async def main():
        q = coro.Queue()
        getter = await coro.spawn(q.get)
        await coro.sleep(0)
        q.put_nowait("precious")  # handed to the getter now
        await getter.cancel()  # too late to take the item back: it returns it
        return getter.result, q.qsize()

    assert coro.run(main) == ("precious", 0)


def test_a_notified_condition_waiter_cancelled_before_it_has_the_lock_passes_it_on():
    # it will not act on its notification, so the next waiter gets it (asyncio does the
    # same since 3.13, gh-112202); the notification is not lost
    async def main():
        cond = coro.Condition()
        seen = []

        async def waiter(name):
            async with cond:
                try:
                    await cond.wait()
                    seen.append((name, "woke"))
                except coro.TaskCancelled:
                    seen.append((name, "cancelled"))
                    raise

        first = await coro.spawn(waiter, "first")
        second = await coro.spawn(waiter, "second")
        await coro.sleep(0)  # both wait
        async with cond:
            cond.notify(1)  # to the first, which then waits for the lock held here
            await coro.sleep(0)
            await first.cancel(blocking=False)
        async with coro.timeout_after(30):
            await first.wait()
            await second.wait()
        return seen

    assert coro.run(main) == [("first", "cancelled"), ("second", "woke")]
