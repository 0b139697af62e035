"""Thread queues: the same scenarios on queue and plait.queue, the same results."""

import os
import queue
import signal
import threading
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import plait.queue
from tests.support import wait_until

HAS_STD_SHUTDOWN = hasattr(queue.Queue, "shutdown")


@pytest.fixture(params=[queue, plait.queue], ids=["queue", "plait"])
def qmod(request):
    return request.param


@pytest.fixture(
    params=[
        pytest.param(queue, marks=pytest.mark.skipif(not HAS_STD_SHUTDOWN, reason="3.13+")),
        plait.queue,
    ],
    ids=["queue", "plait"],
)
def shutdown_mod(request):
    return request.param


def run_threads(targets):
    threads = [threading.Thread(target=t) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("maxsize", [0, 1, 7])
@pytest.mark.parametrize("kind", ["Queue", "LifoQueue", "PriorityQueue"])
def test_producers_consumers_and_join(qmod, kind, maxsize, no_leaks):
    q = getattr(qmod, kind)(maxsize)
    n, producers, consumers = 2000, 3, 3
    got = []

    def produce(k):
        return lambda: [q.put((i, k)) for i in range(n)]

    def consume():
        while True:
            item = q.get(timeout=30)
            if item is None or item == (n, None):
                q.task_done()
                return
            got.append(item)
            q.task_done()

    threads = [threading.Thread(target=consume) for _ in range(consumers)]
    for t in threads:
        t.start()
    run_threads([produce(k) for k in range(producers)])
    q.join()
    for _ in range(consumers):
        q.put((n, None))  # sorts after every real item in a PriorityQueue
    for t in threads:
        t.join(30)
    assert sorted(got) == sorted((i, k) for i in range(n) for k in range(producers))
    assert q.empty() and q.unfinished_tasks == 0


@pytest.mark.timeout(60)
def test_fifo_keeps_each_producers_order(qmod, no_leaks):
    q = qmod.Queue(maxsize=16)
    n = 5000
    producers = [lambda k=k: [q.put((k, i)) for i in range(n)] for k in range(3)]
    got = []
    run_threads([*producers, lambda: got.extend(q.get(timeout=30) for _ in range(3 * n))])
    for k in range(3):
        assert [i for (kk, i) in got if kk == k] == list(range(n))


def test_order_of_each_kind(qmod):
    for kind, expected in [
        ("Queue", [3, 1, 2]),
        ("LifoQueue", [2, 1, 3]),
        ("PriorityQueue", [1, 2, 3]),
    ]:
        q = getattr(qmod, kind)()
        for x in (3, 1, 2):
            q.put(x)
        assert q.qsize() == 3 and not q.empty()
        assert [q.get_nowait() for _ in range(3)] == expected


@pytest.mark.timeout(10)
def test_timeouts_and_nowait(qmod):
    q = qmod.Queue(maxsize=1)
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(block=False, timeout=-1)  # non-blocking ignores the timeout
    q.put("a")
    assert q.full()
    with pytest.raises(queue.Full):
        q.put("b", timeout=0.01)
    with pytest.raises(queue.Full):
        q.put_nowait("b")
    with pytest.raises(queue.Full):
        q.put("b", block=False)
    assert q.get(timeout=0) == "a"


def test_bad_input_gets_the_standard_exceptions(qmod):
    q = qmod.Queue(maxsize=1)
    with pytest.raises(ValueError, match="non-negative"):
        q.get(timeout=-1)
    with pytest.raises(ValueError, match="non-negative"):
        q.put(1, timeout=-1)
    with pytest.raises(ValueError, match="task_done"):
        q.task_done()
    unbounded = qmod.Queue()
    unbounded.put(1, timeout=-1)  # an unbounded put never waits, so never checks
    assert unbounded.get() == 1


def test_plait_messages_name_the_queue():
    q = plait.queue.Queue()
    with pytest.raises(ValueError, match=r"Queue\.get"):
        q.get(timeout=-0.5)
    with pytest.raises(ValueError, match=r"too many times on <plait"):
        q.task_done()


@pytest.mark.timeout(10)
def test_blocked_get_is_woken_by_put(qmod, no_leaks):
    q = qmod.Queue()
    got = []
    t = threading.Thread(target=lambda: got.append(q.get(timeout=10)))
    t.start()
    q.put("wake")
    t.join(10)
    assert got == ["wake"]


@pytest.mark.timeout(10)
def test_blocked_put_is_woken_by_get(qmod, no_leaks):
    q = qmod.Queue(maxsize=1)
    q.put(1)
    t = threading.Thread(target=q.put, args=(2,), kwargs={"timeout": 10})
    t.start()
    assert wait_until(lambda: t.is_alive())
    assert q.get(timeout=10) == 1
    t.join(10)
    assert q.get(timeout=10) == 2


@pytest.mark.timeout(10)
def test_holding_the_mutex_excludes_other_threads(qmod, no_leaks):
    q = qmod.Queue()
    for i in range(3):
        q.put(i)
    with q.mutex:
        q.queue.clear()  # the idiom for emptying a queue
        putter = threading.Thread(target=q.put, args=("after",))
        putter.start()
        putter.join(0.05)
        assert putter.is_alive()  # blocked on the mutex we hold
        assert len(q.queue) == 0
    putter.join(10)
    assert not putter.is_alive()
    assert list(q.queue) == ["after"] and q.get(timeout=1) == "after"
    assert not q.mutex.locked()
    with pytest.raises(RuntimeError):
        q.mutex.release()
    with q.mutex:
        q.unfinished_tasks = 0  # the rest of the idiom: forget the dropped tasks
        if qmod is queue:
            q.all_tasks_done.notify_all()
    q.join()


def test_simple_queue(qmod):
    q = qmod.SimpleQueue()
    q.put(1)
    q.put(2, block=False, timeout=-5)
    q.put_nowait(3)
    assert q.qsize() == 3 and not q.empty()
    assert [q.get(), q.get(timeout=1), q.get_nowait()] == [1, 2, 3]
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)
    with pytest.raises(TypeError):
        qmod.SimpleQueue(5)


def test_generic_aliases(qmod):
    assert qmod.Queue[int] is not None and qmod.SimpleQueue[str] is not None


class _Dedup:
    """A subclass mixin overriding the storage hooks: drops an item equal to the last one."""

    def _init(self, maxsize):
        self.queue = []
        self.inits = maxsize

    def _qsize(self):
        return len(self.queue)

    def _put(self, item):
        if not self.queue or self.queue[-1] != item:
            self.queue.append(item)

    def _get(self):
        return self.queue.pop(0)


def test_subclass_storage_hooks_keep_working(qmod):
    Dedup = type("Dedup", (_Dedup, qmod.Queue), {})
    q = Dedup(5)
    assert q.inits == 5
    for x in [1, 1, 2, 2, 2, 3]:
        q.put(x)
    assert q.qsize() == 3
    assert [q.get_nowait() for _ in range(3)] == [1, 2, 3]
    assert q.unfinished_tasks == 6  # every put counts, as in the standard library


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(["Queue", "LifoQueue", "PriorityQueue"]),
    maxsize=st.integers(0, 4),
    ops=st.lists(st.one_of(st.integers(0, 9), st.none()), max_size=40),
)
def test_random_operations_match_the_standard_queue(kind, maxsize, ops):
    """Integers are put_nowait, None is get_nowait; outcomes must be identical."""

    def run(qmod):
        q = getattr(qmod, kind)(maxsize)
        outcomes = []
        for op in ops:
            try:
                if op is None:
                    outcomes.append(("got", q.get_nowait()))
                else:
                    q.put_nowait(op)
                    outcomes.append(("put", q.qsize()))
            except queue.Empty:
                outcomes.append("empty")
            except queue.Full:
                outcomes.append("full")
        return outcomes, q.qsize(), q.unfinished_tasks, q.full(), q.empty()

    assert run(plait.queue) == run(queue)


@pytest.mark.timeout(10)
def test_shutdown_lets_consumers_drain_then_raises(shutdown_mod, no_leaks):
    q = shutdown_mod.Queue()
    q.put(1)
    q.put(2)
    q.shutdown()
    with pytest.raises(shutdown_mod.ShutDown):
        q.put(3)
    assert [q.get(), q.get()] == [1, 2]
    with pytest.raises(shutdown_mod.ShutDown):
        q.get(timeout=5)
    q.task_done()
    q.task_done()
    q.join()


@pytest.mark.timeout(10)
def test_shutdown_wakes_blocked_getters_and_putters(shutdown_mod, no_leaks):
    empty, full = shutdown_mod.Queue(), shutdown_mod.Queue(maxsize=1)
    full.put("x")
    outcomes = []

    def call(fn, *args):
        def target():
            try:
                fn(*args, timeout=10)
                outcomes.append("returned")
            except shutdown_mod.ShutDown:
                outcomes.append("shutdown")

        return target

    threads = [threading.Thread(target=call(empty.get)), threading.Thread(target=call(full.put, 1))]
    for t in threads:
        t.start()
    assert wait_until(lambda: all(t.is_alive() for t in threads))
    empty.shutdown()
    full.shutdown()
    for t in threads:
        t.join(10)
    assert outcomes == ["shutdown", "shutdown"]


@pytest.mark.timeout(10)
def test_immediate_shutdown_drops_items_and_releases_join(shutdown_mod, no_leaks):
    q = shutdown_mod.Queue()
    for i in range(3):
        q.put(i)
    joined = []
    t = threading.Thread(target=lambda: joined.append(q.join()))
    t.start()
    q.shutdown(immediate=True)
    t.join(10)
    assert not t.is_alive() and len(joined) == 1
    assert q.qsize() == 0 and q.unfinished_tasks == 0
    with pytest.raises(shutdown_mod.ShutDown):
        q.get_nowait()


def test_shutdown_exception_is_catchable_by_the_standard_name():
    q = plait.queue.Queue()
    q.shutdown()
    base = getattr(queue, "ShutDown", plait.queue.ShutDown)
    with pytest.raises(base):
        q.put(1)


@pytest.mark.timeout(10)
def test_join_with_timeout_reports_unfinished_work(no_leaks):
    q = plait.queue.Queue()
    q.put("work")
    assert q.join(timeout=0.01) is False
    q.get()
    q.task_done()
    assert q.join(timeout=0.01) is True


@pytest.mark.timeout(10)
def test_a_signal_handler_can_interrupt_a_blocked_get(qmod, no_leaks):
    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted

    old = signal.signal(signal.SIGUSR1, handler)
    timer = threading.Timer(0.05, os.kill, args=(os.getpid(), signal.SIGUSR1))
    try:
        q = qmod.Queue()
        timer.start()
        with pytest.raises(Interrupted):
            q.get(timeout=5)
        q.put("still works")
        assert q.get(timeout=1) == "still works"
    finally:
        timer.join(5)
        signal.signal(signal.SIGUSR1, old)


@pytest.mark.timeout(10)
def test_statistics_show_who_waits(no_leaks):
    q = plait.queue.Queue(maxsize=1)
    q.put("x")
    assert q.statistics() == {
        "qsize": 1,
        "maxsize": 1,
        "unfinished_tasks": 1,
        "getters_waiting": 0,
        "putters_waiting": 0,
        "joiners_waiting": 0,
        "is_shutdown": False,
    }
    putter = threading.Thread(target=q.put, args=("y",), kwargs={"timeout": 10})
    joiner = threading.Thread(target=q.join, kwargs={"timeout": 10})
    putter.start()
    joiner.start()
    assert wait_until(lambda: q.statistics()["putters_waiting"] == 1)
    assert wait_until(lambda: q.statistics()["joiners_waiting"] == 1)
    for _ in range(2):
        q.get(timeout=10)
        q.task_done()
    putter.join(10)
    joiner.join(10)
    assert q.statistics()["putters_waiting"] == q.statistics()["joiners_waiting"] == 0
    simple = plait.queue.SimpleQueue()
    getter = threading.Thread(target=simple.get, kwargs={"timeout": 10})
    getter.start()
    assert wait_until(lambda: simple.statistics()["getters_waiting"] == 1)
    simple.put(1)
    getter.join(10)


@pytest.mark.timeout(30)
def test_many_getters_with_timeouts_lose_no_item(no_leaks):
    """Getters time out while items arrive: every item is still got exactly once."""
    q = plait.queue.Queue()
    got = deque()
    stop = threading.Event()

    def getter():
        while not stop.is_set() or not q.empty():
            try:
                got.append(q.get(timeout=0.001))
            except queue.Empty:
                pass

    threads = [threading.Thread(target=getter) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(20000):
        q.put(i)
    stop.set()
    for t in threads:
        t.join(20)
    assert sorted(got) == list(range(20000))
