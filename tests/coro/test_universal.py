"""UniversalQueue and UniversalEvent serve plait tasks, asyncio tasks and threads at once.

Where a standard object does the same job (``queue.Queue``, ``threading.Event``), a
scenario runs on it and on plait's and expects the same result. Every blocking call takes
a timeout, so a lost wake-up fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import signal
import threading

import pytest

from plait import coro
from tests.support import wait_until

pytestmark = [pytest.mark.usefixtures("no_leaks"), pytest.mark.timeout(60)]


def _getters_waiting(q) -> int:
    if isinstance(q, coro.UniversalQueue):
        return q.statistics()["getters_waiting"]
    return len(q.not_empty._waiters)  # queue.Queue keeps no count: its condition's waiters


def _drain(q) -> list:
    items = []
    while True:
        try:
            items.append(q.get_nowait())
        except queue.Empty:
            return items


def _outcome(call, *args, **kwargs) -> str:
    try:
        return f"returned {call(*args, **kwargs)!r}"
    except Exception as e:  # the scenario compares what each queue raised
        return f"{type(e).__name__}: {e}"


# -- putters are admitted while there is room --------------------------------------------


def _thread_getter(q: coro.UniversalQueue, got: list) -> threading.Thread:
    t = threading.Thread(target=lambda: got.append(q.get(timeout=30)))
    t.start()
    return t


def _plait_getter(q: coro.UniversalQueue, got: list) -> threading.Thread:
    async def get():
        got.append(await q.get_async())

    t = threading.Thread(target=coro.run, args=(get,))
    t.start()
    return t


@pytest.mark.parametrize("other_getter", [_thread_getter, _plait_getter])
@pytest.mark.parametrize("asyncio_getter", ["keeps its item", "is cancelled"])
def test_a_slot_freed_by_an_asyncio_getter_admits_every_waiting_putter_it_can(
    other_getter, asyncio_getter
):
    q = coro.UniversalQueue(maxsize=1)
    got: list = []

    async def main():
        a = asyncio.create_task(q.get_async())
        await asyncio.sleep(0)  # the asyncio getter waits on the empty queue
        q.put_nowait("a")  # handed to it: it holds the only slot until it runs
        other = other_getter(q, got)  # a second getter waits: there is no item for it
        assert wait_until(lambda: q.statistics()["getters_waiting"] == 1)
        putters = [asyncio.create_task(q.put_async(item)) for item in ("p1", "p2")]
        await asyncio.sleep(0)  # both putters wait for the slot
        assert q.statistics()["putters_waiting"] == 2
        if asyncio_getter == "is cancelled":
            a.cancel()  # it gives "a" back: the other getter takes it
        [kept] = await asyncio.gather(a, return_exceptions=True)
        other.join(30)
        # the slot came free: every putter gets in as there is room, none waits on an
        # empty queue
        left = 1 if kept == "a" else 2  # of the three items, the getters took one or two
        rest = [await asyncio.wait_for(q.get_async(), 10) for _ in range(left)]
        await asyncio.wait_for(asyncio.gather(*putters), 10)
        return kept, rest

    kept, rest = asyncio.run(main())
    if asyncio_getter == "keeps its item":
        assert (kept, got, rest) == ("a", ["p1"], ["p2"])
    else:
        assert isinstance(kept, asyncio.CancelledError)
        assert (got, rest) == (["a"], ["p1", "p2"])
    q.put_nowait("x")  # the queue is empty and takes an item at once
    assert _drain(q) == ["x"]
    assert q.statistics()["putters_waiting"] == q.statistics()["getters_waiting"] == 0


def test_threads_asyncio_and_plait_tasks_through_a_one_slot_queue_lose_and_repeat_nothing():
    q = coro.UniversalQueue(maxsize=1)
    per_producer = 500
    producers = ["thread0", "thread1", "asyncio", "plait"]
    total = per_producer * len(producers)
    lock = threading.Lock()
    got: list = []
    failures: list = []

    def record(item) -> None:
        with lock:
            got.append(item)

    def done() -> bool:
        with lock:
            return len(got) >= total or bool(failures)

    def thread_producer(tag: str) -> None:
        try:
            for i in range(per_producer):
                q.put((tag, i), timeout=20)
        except queue.Full:
            failures.append(f"{tag}: put waited 20 s")

    def thread_consumer() -> None:
        while not done():
            try:
                record(q.get(timeout=0.002))  # times out often: getters come and go
            except queue.Empty:
                pass

    async def asyncio_main() -> None:
        async def produce():
            for i in range(per_producer):
                await asyncio.wait_for(q.put_async(("asyncio", i)), 20)

        async def consume():
            while not done():
                get = asyncio.create_task(q.get_async())
                await asyncio.wait({get}, timeout=0.001)
                get.cancel()  # if it was handed an item meanwhile, it gives it back
                try:
                    record(await get)
                except asyncio.CancelledError:
                    pass

        try:
            await asyncio.gather(produce(), consume(), consume())
        except asyncio.TimeoutError:
            failures.append("asyncio: put waited 20 s")

    async def plait_main() -> None:
        async def produce():
            for i in range(per_producer):
                await q.put_async(("plait", i))

        async def consume():
            while not done():
                try:
                    async with coro.timeout_after(0.001):
                        record(await q.get_async())
                except coro.TaskTimeout:
                    pass

        try:
            async with coro.timeout_after(20):
                async with coro.TaskGroup() as g:
                    await g.spawn(produce)
                    await g.spawn(consume)
                    await g.spawn(consume)
        except coro.TaskTimeout:
            failures.append("plait: put waited 20 s")

    threads = [threading.Thread(target=thread_producer, args=(tag,)) for tag in producers[:2]]
    threads += [threading.Thread(target=thread_consumer) for _ in range(2)]
    threads.append(threading.Thread(target=asyncio.run, args=(asyncio_main(),)))
    threads.append(threading.Thread(target=coro.run, args=(plait_main,)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    assert not [t for t in threads if t.is_alive()]
    assert failures == []
    assert not [item for item, n in collections.Counter(got).items() if n > 1]
    assert sorted(got) == sorted((tag, i) for tag in producers for i in range(per_producer))
    assert q.qsize() == 0 and not q.full()


# -- the standard semantics -----------------------------------------------------------


@pytest.mark.parametrize("make", [queue.Queue, coro.UniversalQueue])
def test_a_negative_timeout_is_refused_as_queue_queue_refuses_it(make):
    def scenario() -> list[str]:
        empty, bounded, full, unbounded = make(), make(2), make(1), make()
        bounded.put("b")
        full.put("f")
        return [
            _outcome(empty.get, timeout=-1),
            _outcome(bounded.get, timeout=-1),
            _outcome(bounded.put, "c", timeout=-1),
            _outcome(full.put, "g", timeout=-1),
            _outcome(unbounded.put, "u", timeout=-1),  # it never waits: the timeout is unread
            _outcome(full.get, timeout=0),
            _outcome(empty.get, block=False, timeout=-1),
        ]

    refused = "ValueError: 'timeout' must be a non-negative number"
    assert scenario() == [refused, refused, refused, refused, "returned None"] + [
        "returned 'f'",
        "Empty: ",
    ]


def test_a_nan_timeout_is_refused():
    # queue.Queue compares the timeout with 0 only: NaN passes, and its get spins for good
    empty, full = coro.UniversalQueue(), coro.UniversalQueue(1)
    full.put("f")
    with pytest.raises(ValueError, match="non-negative"):
        empty.get(timeout=float("nan"))
    with pytest.raises(ValueError, match="non-negative"):
        full.put("g", timeout=float("nan"))


@pytest.mark.parametrize("make", [threading.Event, coro.UniversalEvent])
def test_a_thread_waiting_on_an_event_sees_a_set_clear_pulse(make):
    ev = make()
    answers: list = []
    t = threading.Thread(target=lambda: answers.append(ev.wait(30)))
    t.start()
    assert wait_until(lambda: len(ev._cond._waiters) == 1)  # the thread waits
    ev.set()
    ev.clear()
    t.join(30)
    assert answers == [True]
    assert not ev.is_set()


@pytest.mark.parametrize("make", [queue.Queue, coro.UniversalQueue])
def test_a_getter_interrupted_after_it_was_handed_an_item_leaves_it_in_the_queue(make):
    """Ctrl-C lands in a thread's ``get`` while a put hands it an item: the get raises
    KeyboardInterrupt, the item stays in the queue, and the queue never holds more than
    ``maxsize``."""
    q = make(1)
    in_handler, handed = threading.Event(), threading.Event()
    put_second: list = []

    def on_signal(signum, frame):
        in_handler.set()
        handed.wait(30)  # meanwhile the item is handed over and a second put is tried
        raise KeyboardInterrupt

    def helper():
        wait_until(lambda: _getters_waiting(q) == 1)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR2)
        in_handler.wait(30)  # the getter runs its handler: it cannot take the item yet
        q.put("x", timeout=30)
        put_second.append(_outcome(q.put_nowait, "y"))
        handed.set()

    previous = signal.signal(signal.SIGUSR2, on_signal)
    t = threading.Thread(target=helper)
    try:
        t.start()
        got = _outcome(q.get, timeout=30)
    except KeyboardInterrupt:
        got = "KeyboardInterrupt"
    finally:
        t.join(30)
        signal.signal(signal.SIGUSR2, previous)
    assert (got, put_second, q.qsize(), q.full()) == ("KeyboardInterrupt", ["Full: "], 1, True)
    assert _drain(q) == ["x"]


# -- asyncio getters whose loop is closed by hand -------------------------------------


async def _start_getters(q: coro.UniversalQueue, tasks: list, n: int = 1) -> None:
    """Start ``n`` asyncio tasks that wait in ``q.get_async()``, into ``tasks``."""
    for _ in range(n):
        tasks.append(asyncio.get_running_loop().create_task(q.get_async()))
    await asyncio.sleep(0)


def _run_and_close(loop: asyncio.AbstractEventLoop, coroutine) -> None:
    loop.run_until_complete(coroutine)
    loop.close()


def test_a_getter_left_waiting_on_a_loop_closed_by_hand_takes_nothing():
    q = coro.UniversalQueue(maxsize=1)
    loop = asyncio.new_event_loop()
    tasks: list = []

    _run_and_close(loop, _start_getters(q, tasks))  # the getter task waits, forever
    q.put("precious", timeout=30)  # nobody is left to take it: it stays in the queue
    assert q.get(timeout=30) == "precious"
    q.put("next", timeout=30)  # and no slot is held for the dead getter
    assert _drain(q) == ["next"]
    assert q.statistics()["getters_waiting"] == 0
    tasks[0].get_coro().close()  # what the garbage collector would do


def test_a_getter_closed_with_its_loop_withdraws_and_gives_back_what_it_was_handed():
    q = coro.UniversalQueue(maxsize=1)
    loop = asyncio.new_event_loop()
    tasks: list = []

    loop.run_until_complete(_start_getters(q, tasks, 2))
    q.put("handed", timeout=30)  # the loop is stopped, not closed: the first getter's
    loop.close()  # wake-up is due, and closing the loop drops it
    assert q.full() and q.statistics()["getters_waiting"] == 1
    for task in tasks:
        task.get_coro().close()  # what the garbage collector does to the tasks
    assert q.statistics()["getters_waiting"] == 0
    assert _drain(q) == ["handed"]
    q.put("next", timeout=30)
    assert _drain(q) == ["next"]


def test_a_getter_destroyed_inside_a_call_on_the_queue_in_its_thread_is_passed_over():
    """The garbage collector may destroy a waiting task in the middle of a call on the
    queue in the same thread, the queue's lock held: the getter must not wait for that
    lock (it would wait for good), and a later put passes it over."""
    q = coro.UniversalQueue(maxsize=1)
    loop = asyncio.new_event_loop()
    tasks: list = []

    try:
        loop.run_until_complete(_start_getters(q, tasks))  # stopped, not closed
        with q._lock:  # as a call on the queue in this thread holds it
            tasks[0].get_coro().close()
        q.put("x", timeout=30)
        assert _drain(q) == ["x"]
        assert q.statistics()["getters_waiting"] == 0
    finally:
        loop.close()
