"""Queues between real processes: the standard scenarios, many producers and consumers,
no feeder-thread deadlock, processes killed in the middle, and bad input."""

from __future__ import annotations

import os
import pickle
import queue
import signal
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plait.ipc import Pipe
from plait.ipc.queues import JoinableQueue, Queue
from tests.ipc.conftest import PLAIT
from tests.support import finish, start, wait_until

pytestmark = pytest.mark.timeout(60)


def _produce(q, start, count):
    for i in range(start, start + count):
        q.put(i)


def test_fifo_empty_full_match(api, no_shm_leaks):
    q = api.Queue(2)
    assert q.empty() and not q.full()
    q.put("a")
    q.put_nowait(["b"])
    assert wait_until(q.full, 5)
    assert q.qsize() == 2
    with pytest.raises(queue.Full):
        q.put("c", timeout=0.01)
    with pytest.raises(queue.Full):
        q.put_nowait("c")
    assert q.get() == "a"
    assert q.get_nowait() == ["b"]
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(True, -1)  # a negative timeout polls
    q.close()
    q.join_thread()
    with pytest.raises(ValueError, match="closed"):
        q.put(1)
    with pytest.raises(ValueError, match="closed"):
        q.get()


def test_items_from_a_child_arrive_in_order(api, no_shm_leaks):
    q = api.Queue()
    child = start(api.Process, _produce, q, 0, 1000)
    assert [q.get(timeout=10) for _ in range(1000)] == list(range(1000))
    assert finish(child) == 0


def _consume_and_report(q, conn, n):
    conn.send([q.get(timeout=20) for _ in range(n)])


def test_many_producers_many_consumers(api, no_shm_leaks):
    q = api.Queue(50)
    pipes = [Pipe() for _ in range(3)]  # one each: big messages of two senders would mix
    producers = [start(api.Process, _produce, q, k * 1000, 1000) for k in range(3)]
    consumers = [start(api.Process, _consume_and_report, q, b, 1000) for _, b in pipes]
    got = [a.recv(timeout=30) for a, _ in pipes]
    assert [finish(p) for p in producers + consumers] == [0] * 6
    everything = sorted(x for part in got for x in part)
    assert everything == list(range(3000))
    for part in got:  # each producer's items keep their order in each consumer
        for k in range(3):
            mine = [x for x in part if k * 1000 <= x < (k + 1) * 1000]
            assert mine == sorted(mine)
    for a, b in pipes:
        a.close()
        b.close()


def _work(q):
    while True:
        item = q.get(timeout=20)
        if item is None:
            q.task_done()
            return
        q.task_done()


def test_joinable_queue_join_waits_for_task_done(api, no_shm_leaks):
    q = api.JoinableQueue()
    for i in range(100):
        q.put(i)
    q.put(None)
    worker = start(api.Process, _work, q)
    q.join()
    assert finish(worker) == 0
    with pytest.raises(ValueError):
        q.task_done()


def test_simple_queue_matches(api, no_shm_leaks):
    q = api.SimpleQueue()
    assert q.empty()
    child = start(api.Process, _produce, q, 0, 10)
    assert [q.get() for _ in range(10)] == list(range(10))
    assert finish(child) == 0
    assert q.empty()
    q.close()


def test_a_closed_simple_queue_raises_oserror_as_a_closed_pipe_does(api, no_shm_leaks):
    q = api.SimpleQueue()
    q.put(1)
    q.close()
    for call in (q.get, q.empty, lambda: q.put(2)):
        with pytest.raises(OSError, match="handle is closed"):
            call()


# -- plait only ------------------------------------------------------------------------------


def _put_much_and_exit(q):
    for i in range(200):
        q.put(b"x" * 100_000 + i.to_bytes(4, "big"))


def test_a_producer_can_be_joined_before_its_items_are_read(no_shm_leaks):
    # With multiprocessing.Queue this join deadlocks: the child's feeder thread waits
    # for the pipe to drain before the child can exit.
    q = Queue()
    child = start(PLAIT.Process, _put_much_and_exit, q)
    child.join(20)
    assert child.exitcode == 0
    got = [q.get(timeout=10) for _ in range(200)]
    assert [int.from_bytes(x[-4:], "big") for x in got] == list(range(200))


def _put_forever(q, payload):
    i = 0
    while True:
        q.put((i, payload))
        i += 1


@pytest.mark.parametrize("size", [10, 2_000_000, 20_000_000])
def test_producer_killed_in_put_leaves_a_usable_queue(size, no_shm_leaks):
    q = Queue(4, capacity=1 << 25)
    payload = np.ones(size // 8)
    child = start(PLAIT.Process, _put_forever, q, payload)
    assert wait_until(q.full, 10)
    got = [q.get(timeout=10)[0] for _ in range(3)]
    os.kill(child.pid, signal.SIGKILL)
    assert finish(child) == -signal.SIGKILL
    while True:
        try:
            got.append(q.get(timeout=0.2)[0])
        except queue.Empty:
            break
    assert got == list(range(len(got)))  # a prefix: nothing duplicated, nothing reordered
    q.put((-1, payload))
    item = q.get(timeout=5)
    assert item[0] == -1 and np.array_equal(item[1], payload)
    # A large item is copied in without the ring's lock: the one the producer was
    # copying when it died never arrives and is counted lost. A small one is never lost.
    assert q.statistics()["lost"] <= (1 if size >= 256 * 1024 else 0)


def _put_one(q, item):
    q.put(item)


@pytest.mark.parametrize(
    "put_after, reader",
    [("the death", "wait"), ("the reservation", "get_nowait"), ("the reservation", "poll")],
)
def test_items_behind_a_producer_killed_in_its_put_reach_readers_that_never_sleep(
    put_after, reader, no_shm_leaks
):
    """A large item is reserved, then copied in: a producer killed while copying leaves
    an entry that holds back every later one until somebody sees it died. A blocking
    ``get`` sleeps and then looks; ``get_nowait``, the reader's ``poll`` and a put that
    finds the entry in its way (it rings the doorbell ``wait`` watches) look too."""
    from plait.ipc.connection import wait

    q = Queue(capacity=1 << 28)
    child = start(PLAIT.Process, _put_one, q, b"x" * (80 << 20))  # a third of the ring at most
    assert wait_until(lambda: q.statistics()["bytes_used"] > 0, 20, interval=0)
    if put_after == "the reservation":  # while the producer lives: nobody reaps it yet
        q.put("after")
    os.kill(child.pid, signal.SIGKILL)
    assert finish(child) == -signal.SIGKILL
    if put_after == "the death":
        q.put("after")
    if reader == "wait":
        assert wait([q._reader], 10) == [q._reader]
    elif reader == "poll":
        assert q._reader.poll(10)
    got = []
    for _ in range(1000):
        try:
            got.append(q.get_nowait())
        except queue.Empty:
            break
    if len(got) == 2:  # the producer finished its copy before the kill
        got = got[1:]
    assert got == ["after"]


def _get_forever(q):
    while True:
        q.get(timeout=30)


def test_consumer_killed_in_get_leaves_a_usable_queue(no_shm_leaks):
    q = Queue()
    consumer = start(PLAIT.Process, _get_forever, q)
    assert wait_until(lambda: q.statistics()["getters_waiting"] == 1, 10)
    os.kill(consumer.pid, signal.SIGKILL)
    assert finish(consumer) == -signal.SIGKILL
    q.put("after")
    assert q.get(timeout=5) == "after"
    assert q.qsize() == 0


def test_consumer_killed_while_copying_large_items_out(no_shm_leaks):
    q = Queue(capacity=1 << 25)
    payload = np.ones(1_000_000)  # 8 MB: copied out without the ring's lock
    for i in range(3):
        q.put((i, payload))
    consumer = start(PLAIT.Process, _get_forever, q)
    # Kill it once it has claimed an item: while it copies one out, or between gets.
    assert wait_until(lambda: q.qsize() < 3, 10)
    os.kill(consumer.pid, signal.SIGKILL)
    assert finish(consumer) == -signal.SIGKILL
    for i in range(3, 10):  # room is freed again, also what a dead getter claimed
        q.put((i, payload), timeout=10)
    got = []
    while True:
        try:
            got.append(q.get(timeout=0.5)[0])
        except queue.Empty:
            break
    assert got == sorted(got) and got[-7:] == list(range(3, 10))
    assert q.statistics()["lost"] <= 1  # at most the item the consumer was copying


def test_large_items_travel_without_a_pipe(no_shm_leaks):
    q = Queue(capacity=1 << 20)
    inline = np.arange(40_000, dtype=np.int64)  # 320 kB: in the ring
    big = np.arange(1_000_000, dtype=np.float64)  # 8 MB: in a segment
    child = start(PLAIT.Process, q.put, (inline, big, b"x" * 3_000_000, bytearray(5)))
    a, b, c, d = q.get(timeout=10)
    assert finish(child) == 0
    assert np.array_equal(a, inline) and np.array_equal(b, big)
    assert c == b"x" * 3_000_000 and d == bytearray(5)
    assert b.flags.writeable  # the receiver owns what it got
    b[0] = -1.0


def test_an_unbounded_queue_spills_instead_of_blocking(no_shm_leaks):
    q = Queue(capacity=1 << 17)
    items = [bytes([i]) * 10_000 for i in range(40)]  # 400 kB into a 128 kB ring
    items += [bytes([i % 256]) * (i * 37 % 3000) for i in range(300)]  # small ones fill it up
    for item in items:
        q.put(item, timeout=5)
    assert [q.get(timeout=5) for _ in items] == items


def test_queue_travels_through_a_pipe(no_shm_leaks):
    q = JoinableQueue(3)
    a, b = Pipe()
    with a, b:
        a.send(q)
        q2 = b.recv(timeout=5)
    q2.put("hello")
    assert q.get(timeout=5) == "hello"
    q.task_done()
    q2.join(5)


def test_threads_of_one_process_share_a_queue(no_shm_leaks):
    q = Queue(10)
    out = []
    threads = [threading.Thread(target=_produce, args=(q, k * 500, 500)) for k in range(3)]
    for t in threads:
        t.start()
    for _ in range(1500):
        out.append(q.get(timeout=10))
    for t in threads:
        t.join(10)
    assert sorted(out) == list(range(1500))


def test_threads_putting_arrays_do_not_mix_their_buffers(no_shm_leaks):
    q = Queue()
    arrays = {k: np.full(50_000, k, dtype=np.int64) for k in range(4)}

    def put_many(k):
        for _ in range(50):
            q.put((k, arrays[k], arrays[k] * 2))

    threads = [threading.Thread(target=put_many, args=(k,)) for k in arrays]
    for t in threads:
        t.start()
    for _ in range(200):
        k, a, b = q.get(timeout=10)
        assert (a == k).all() and (b == 2 * k).all()
    for t in threads:
        t.join(10)


def test_bad_input_names_the_cause(no_shm_leaks):
    with pytest.raises(TypeError, match="maxsize must be an int"):
        Queue("3")
    with pytest.raises(ValueError, match="power of two"):
        Queue(capacity=100_000)
    q = Queue()
    with pytest.raises(pickle.PicklingError):
        q.put(threading.Lock())
    assert q.qsize() == 0  # nothing was put
    with pytest.raises(pickle.PicklingError, match="file descriptor"):
        q.put(Queue())
    with pytest.raises(ValueError, match="NaN"):
        q.get(timeout=float("nan"))
    jq = JoinableQueue()
    with pytest.raises(TimeoutError, match="1 tasks"):
        jq.put(1)
        jq.join(0.01)
    q.close()
    with pytest.raises(ValueError, match="closed"):
        q.get()
    with pytest.raises(ValueError, match="closed"):
        q.get_nowait()


def _consume_until_none(q, conn):
    got = []
    while True:
        item = q.get(timeout=20)
        if item is None:
            break
        got.append(item)
    conn.send(got)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    producers=st.integers(1, 3),
    consumers=st.integers(1, 3),
    maxsize=st.sampled_from([0, 1, 7]),
    sizes=st.lists(st.sampled_from([0, 10, 1000, 70_000, 400_000]), min_size=1, max_size=40),
    put_timeout=st.sampled_from([None, 10.0]),
)
def test_no_item_lost_or_duplicated(producers, consumers, maxsize, sizes, put_timeout):
    q = Queue(maxsize, capacity=1 << 20)
    pipes = [Pipe() for _ in range(consumers)]
    items = [(k, i, b"z" * n) for k in range(producers) for i, n in enumerate(sizes)]

    def produce(k):
        for item in items:
            if item[0] == k:
                q.put(item, timeout=put_timeout)

    cons = [start(PLAIT.Process, _consume_until_none, q, b) for _, b in pipes]
    prods = [start(PLAIT.Process, produce, k) for k in range(producers)]
    assert [finish(p) for p in prods] == [0] * producers
    for _ in range(consumers):
        q.put(None, timeout=10)
    got = [a.recv(timeout=30) for a, _ in pipes]
    assert [finish(p) for p in cons] == [0] * consumers
    assert sorted(x for part in got for x in part) == sorted(items)
    for part in got:
        for k in range(producers):
            mine = [x[1] for x in part if x[0] == k]
            assert mine == sorted(mine)
    assert q.statistics()["lost"] == 0
    for a, b in pipes:
        a.close()
        b.close()
