"""Locks, semaphores, conditions, events and barriers across real processes.

Each compatibility scenario runs on ``multiprocessing`` (fork context) and on plait and
expects the same observable result; the owner-died scenarios are plait's own.
"""

from __future__ import annotations

import mmap
import os
import pickle
import signal
import struct
import threading
import time

import pytest

import plait.process
from plait._core import fdpass
from plait.ipc import Pipe
from plait.ipc.synchronize import (
    Barrier,
    Condition,
    Event,
    Lock,
    OwnerDiedError,
    RLock,
    Semaphore,
)
from tests.ipc.conftest import PLAIT
from tests.ipc.lean_children import meet_and_report_imports
from tests.support import finish, python_with_fds, start, wait_until

pytestmark = pytest.mark.timeout(60)


def _add_under_lock(lock, counter, times):
    for _ in range(times):
        with lock:
            (value,) = struct.unpack_from("q", counter)
            struct.pack_into("q", counter, 0, value + 1)


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_lock_excludes_other_processes(api, kind, no_shm_leaks):
    lock = getattr(api, kind)()
    counter = mmap.mmap(-1, 8)
    children = [start(api.Process, _add_under_lock, lock, counter, 2000) for _ in range(3)]
    _add_under_lock(lock, counter, 2000)
    assert [finish(p) for p in children] == [0, 0, 0]
    assert struct.unpack_from("q", counter)[0] == 8000


def test_lock_semantics_match(api, no_shm_leaks):
    lock = api.Lock()
    assert lock.acquire() is True
    assert lock.acquire(False) is False
    assert lock.acquire(True, 0.01) is False
    assert lock.acquire(timeout=-1) is False  # a negative timeout polls
    lock.release()
    with pytest.raises(ValueError):
        lock.release()
    with lock:
        assert lock.acquire(block=False) is False
    assert lock.acquire(block=False) is True
    lock.release()


def test_a_lock_may_be_released_by_another_process(api, no_shm_leaks):
    lock = api.Lock()
    lock.acquire()
    assert finish(start(api.Process, lock.release)) == 0
    assert lock.acquire(timeout=5)
    lock.release()


def _release_rlock(rlock, conn):
    try:
        rlock.release()
    except AssertionError:
        conn.send("AssertionError")
    else:
        conn.send("released")


def test_rlock_semantics_match(api, no_shm_leaks):
    rlock = api.RLock()
    for _ in range(3):
        assert rlock.acquire()
    for _ in range(3):
        rlock.release()
    with pytest.raises(AssertionError):
        rlock.release()
    rlock.acquire()
    # Another thread and another process may not release it.
    errors = []
    thread = threading.Thread(target=lambda: errors.append(_raises(rlock.release)))
    thread.start()
    thread.join(10)
    assert errors == [AssertionError]
    a, b = Pipe()
    with a, b:
        assert finish(start(api.Process, _release_rlock, rlock, b)) == 0
        assert a.recv(timeout=10) == "AssertionError"
    rlock.release()


def _raises(fn):
    try:
        fn()
    except Exception as exc:
        return type(exc)
    return None


def test_semaphores_match(api, no_shm_leaks):
    sem = api.Semaphore(2)
    assert sem.get_value() == 2
    assert sem.acquire() and sem.acquire()
    assert sem.acquire(timeout=0.01) is False
    sem.release()
    sem.release()
    sem.release()  # an unbounded semaphore grows
    assert sem.get_value() == 3
    bounded = api.BoundedSemaphore(2)
    bounded.acquire()
    bounded.release()
    with pytest.raises(ValueError):
        bounded.release()
    assert bounded.get_value() == 2


def test_the_edge_values_of_semaphores_match(api, no_shm_leaks):
    empty = api.BoundedSemaphore(0)  # allowed: it can never be acquired nor released
    assert empty.acquire(False) is False
    with pytest.raises(ValueError):
        empty.release()
    assert api.Semaphore(True).get_value() == 1  # a bool is an int
    assert api.BoundedSemaphore(False).acquire(timeout=0.01) is False


def _hold_and_note(sem, counter, lock):
    with sem:
        with lock:
            counter[0] += 1
            counter[1] = max(counter[1], counter[0])
        time.sleep(0.05)
        with lock:
            counter[0] -= 1


def test_semaphore_bounds_concurrency_across_processes(api, no_shm_leaks):
    sem, lock = api.Semaphore(2), api.Lock()
    shared = mmap.mmap(-1, 16)
    counter = memoryview(shared).cast("q")
    children = [start(api.Process, _hold_and_note, sem, counter, lock) for _ in range(5)]
    assert [finish(p) for p in children] == [0] * 5
    assert counter[0] == 0
    assert 1 <= counter[1] <= 2
    counter.release()


def _wait_for_flag(cond, flag, conn):
    with cond:
        conn.send("ready")  # sent holding the lock, which only wait() gives back
        conn.send(cond.wait_for(lambda: flag[0] == 1, 10))


def test_condition_wait_for_and_notify_all(api, no_shm_leaks):
    cond = api.Condition()
    shared = mmap.mmap(-1, 8)
    flag = memoryview(shared).cast("q")
    a, b = Pipe()
    children = [start(api.Process, _wait_for_flag, cond, flag, b) for _ in range(3)]
    assert [a.recv(timeout=20) for _ in children] == ["ready"] * 3
    with cond:  # taken only once every child sits in wait()
        flag[0] = 1
        cond.notify_all()
    assert [a.recv(timeout=15) for _ in children] == [True] * 3
    assert [finish(p) for p in children] == [0] * 3
    with cond:
        assert cond.wait(0.01) is False  # nobody notifies: times out
        assert cond.wait_for(lambda: False, 0.01) is False
    with pytest.raises((AssertionError, RuntimeError)):
        cond.notify()  # without the lock
    flag.release()
    a.close()
    b.close()


def _wait_and_report(cond, conn):
    with cond:
        conn.send("ready")  # sent holding the lock, which only wait() gives back
        conn.send(cond.wait(10))


def test_condition_notify_n_wakes_n(api, no_shm_leaks):
    cond = api.Condition(api.Lock())
    a, b = Pipe()
    children = [start(api.Process, _wait_and_report, cond, b) for _ in range(3)]
    assert [a.recv(timeout=20) for _ in range(3)] == ["ready"] * 3
    with cond:  # taken only once every child sits in wait()
        cond.notify(2)
    assert [a.recv(timeout=10) for _ in range(2)] == [True, True]
    assert not a.poll(0.2)
    with cond:
        cond.notify()
    assert a.recv(timeout=10) is True
    assert [finish(p) for p in children] == [0] * 3
    a.close()
    b.close()


def _set_later(event):
    time.sleep(0.1)
    event.set()


def test_event_across_processes(api, no_shm_leaks):
    event = api.Event()
    assert not event.is_set()
    assert event.wait(0.01) is False
    child = start(api.Process, _set_later, event)
    assert event.wait(10) is True
    assert event.is_set()
    event.clear()
    assert not event.is_set()
    assert finish(child) == 0


def _wait_event(event, conn):
    conn.send(event.wait(20))


def test_event_set_wakes_every_waiting_process(api, no_shm_leaks):
    event = api.Event()
    pipes = [Pipe() for _ in range(3)]
    children = [start(api.Process, _wait_event, event, b) for _, b in pipes]
    time.sleep(0.2)
    event.set()
    assert [a.recv(timeout=20) for a, _ in pipes] == [True] * 3
    assert [finish(p) for p in children] == [0] * 3
    for a, b in pipes:
        a.close()
        b.close()


def _pass_barrier(barrier, conn):
    conn.send(barrier.wait(10))


def test_barrier_across_processes(api, no_shm_leaks):
    barrier = api.Barrier(3)
    a, b = Pipe()
    children = [start(api.Process, _pass_barrier, barrier, b) for _ in range(2)]
    mine = barrier.wait(10)
    assert sorted([mine, a.recv(timeout=10), a.recv(timeout=10)]) == [0, 1, 2]
    assert [finish(p) for p in children] == [0, 0]
    assert barrier.parties == 3 and barrier.n_waiting == 0 and not barrier.broken
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(0.05)  # nobody else comes: the timeout breaks it
    assert barrier.broken
    barrier.reset()
    assert not barrier.broken
    a.close()
    b.close()


# -- plait only: owner death, transfer, bad input ------------------------------------------


def _acquire_and_die(lock):
    lock.acquire()
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("cls", [Lock, RLock])
def test_holder_killed_waiter_gets_owner_died(cls, no_shm_leaks):
    lock = cls()
    child = start(PLAIT.Process, _acquire_and_die, lock)
    assert wait_until(lambda: lock._owner() == child.pid, 10)
    with pytest.raises(OwnerDiedError) as info:
        lock.acquire(timeout=10)
    assert info.value.pid == child.pid
    assert str(child.pid) in str(info.value)
    assert not lock._is_mine()
    assert lock.acquire(timeout=5)  # the lock was freed
    lock.release()
    assert finish(child) == -signal.SIGKILL


def _waiter(lock, conn):
    try:
        with lock:
            conn.send("acquired")
    except OwnerDiedError as exc:
        conn.send(("died", exc.pid))


def test_only_one_waiter_is_told_of_the_death(no_shm_leaks):
    lock = Lock()
    holder = start(PLAIT.Process, _acquire_and_die, lock)
    assert wait_until(lambda: lock._owner() == holder.pid, 10)
    a, b = Pipe()
    waiters = [start(PLAIT.Process, _waiter, lock, b) for _ in range(3)]
    replies = [a.recv(timeout=15) for _ in waiters]
    assert replies.count("acquired") == 2
    assert ("died", holder.pid) in replies
    assert [finish(p) for p in waiters] == [0] * 3
    assert finish(holder) == -signal.SIGKILL
    a.close()
    b.close()


def test_waiting_with_a_timeout_still_times_out_on_a_live_holder(no_shm_leaks):
    lock = Lock()
    event = Event()
    child = start(PLAIT.Process, _hold_until, lock, event)
    assert wait_until(lambda: lock._owner() == child.pid, 10)
    assert lock.acquire(timeout=0.25) is False
    event.set()
    assert lock.acquire(timeout=10)
    lock.release()
    assert finish(child) == 0


def _hold_until(lock, event):
    with lock:
        event.wait(10)


def test_primitives_travel_through_a_pipe(no_shm_leaks):
    lock, sem, cond, event, barrier = Lock(), Semaphore(0), Condition(), Event(), Barrier(1)
    a, b = Pipe()
    with a, b:
        a.send((lock, sem, cond, event, barrier))
        lock2, sem2, cond2, event2, barrier2 = b.recv(timeout=5)
    lock2.acquire()
    assert lock.acquire(False) is False
    lock.release()
    sem2.release()
    assert sem.get_value() == 1
    event2.set()
    assert event.is_set()
    with cond2:
        assert cond2.wait(0.01) is False
    assert barrier2.wait(1) == 0


def test_pickling_outside_a_transfer_is_refused():
    with pytest.raises(pickle.PicklingError, match="file descriptor"):
        pickle.dumps(Lock())


def test_bad_input_names_the_cause():
    with pytest.raises(ValueError, match=">= 0"):
        Semaphore(-1)
    with pytest.raises(TypeError, match="int"):
        Semaphore("3")
    with pytest.raises(TypeError, match="Lock or RLock"):
        Condition(Semaphore())
    with pytest.raises(ValueError, match="parties"):
        Barrier(-2)
    with pytest.raises(ValueError, match="NaN"):
        Lock().acquire(True, float("nan"))


def _sleep_on(sem):
    sem.acquire(timeout=30)


def test_sleepers_are_interruptible(no_shm_leaks):
    sem = Semaphore(0)
    fired = []

    def handler(signum, frame):
        fired.append(signum)
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(KeyboardInterrupt):
            sem.acquire(timeout=20)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert fired == [signal.SIGALRM]


def test_threads_of_one_process_share_a_lock():
    lock = Lock()
    counter = [0]

    def work():
        for _ in range(5000):
            with lock:
                counter[0] += 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert counter[0] == 20000


def _add_to_value(lock, value, times):
    for _ in range(times):
        with lock:
            value.value += 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_lock_and_value_as_arguments_of_started_children(method, no_shm_leaks):
    """The start methods carry the primitives' fds: the children share one lock word."""
    from plait.ipc.sharedctypes import RawValue

    ctx = plait.process.get_context(method)
    lock, value = Lock(), RawValue("q", 0)
    children = [ctx.Process(target=_add_to_value, args=(lock, value, 500)) for _ in range(3)]
    for child in children:
        child.start()
    _add_to_value(lock, value, 500)
    assert [finish(child) for child in children] == [0, 0, 0]
    assert value.value == 2000


@pytest.mark.timeout(60)
def test_a_spawned_child_using_conditions_and_barriers_loads_no_lock_order_checker(
    no_shm_leaks,
):
    """The primitives' shared algorithms (``plait.threads.waiting``) come without the
    lock-order checker: a spawned child that unpickles them does not import it."""
    ctx = plait.process.get_context("spawn")
    cond, barrier = Condition(), Barrier(2)
    reader, writer = Pipe(duplex=False)
    heavy = ["plait.threads.lockorder", "plait.threads.sync", "dataclasses", "inspect"]
    child = ctx.Process(target=meet_and_report_imports, args=(cond, barrier, writer, heavy))
    child.start()
    writer.close()
    try:
        assert barrier.wait(30) in (0, 1)
        assert reader.poll(30)
        assert reader.recv() == []
    finally:
        reader.close()
        assert finish(child) == 0


CHILD_REBUILDS_PRIMITIVES = """
import pickle, sys
from plait._core import fdpass
data = sys.stdin.buffer.read()
with fdpass.FdSupply(int(fd) for fd in sys.argv[1:]):
    lock, queue, value, event = pickle.loads(data)
with lock:
    value.value += 1
queue.put(("rebuilt in a fresh interpreter", value.value))
event.wait(30)
"""


def test_primitives_travel_by_the_spawn_hook(no_shm_leaks):
    # What plait's spawn start method does: pickle under an FdCollector, hand the fds
    # to a fresh interpreter.
    from plait.ipc.queues import Queue
    from plait.ipc.sharedctypes import Value

    lock, queue, value, event = Lock(), Queue(), Value("i", 41), Event()
    with fdpass.FdCollector() as collector:
        data = pickle.dumps((lock, queue, value, event))
    with python_with_fds(CHILD_REBUILDS_PRIMITIVES, data, collector) as child:
        assert queue.get(timeout=30) == ("rebuilt in a fresh interpreter", 42)
        event.set()
        assert child.wait(30) == 0


def test_an_fd_that_is_not_a_sync_block_is_refused_and_closed():
    from plait._core.block import Block

    r, w = os.pipe()
    try:
        with pytest.raises(ValueError, match="memory block is not one: the fd is not a memfd"):
            Block(16, r)
        with pytest.raises(OSError):
            os.fstat(r)  # closed by the refusal, not leaked
    finally:
        os.close(w)


def _notify_all_and_report(cond, conn):
    with cond:
        cond.notify_all()
    conn.send("notified")


@pytest.mark.timeout(60)
def test_notify_does_not_wait_for_a_waiter_killed_in_wait(no_shm_leaks):
    """multiprocessing's notify waits forever for a killed waiter to wake; plait's skips it."""
    cond = Condition(Lock())
    a, b = Pipe()
    victim = start(PLAIT.Process, _wait_and_report, cond, b)
    assert a.recv(timeout=20) == "ready"
    with cond:  # taken only once the victim sits in wait()
        pass
    os.kill(victim.pid, signal.SIGKILL)
    assert finish(victim) == -signal.SIGKILL
    survivor = start(PLAIT.Process, _wait_and_report, cond, b)
    assert a.recv(timeout=20) == "ready"
    # notify_all in another process: a hang there fails the test instead of hanging it.
    notifier = start(PLAIT.Process, _notify_all_and_report, cond, b)
    assert a.poll(20), "notify_all hung on the killed waiter"
    assert sorted([a.recv(timeout=5), a.recv(timeout=10)], key=str) == [True, "notified"]
    assert [finish(notifier), finish(survivor)] == [0, 0]
    with cond:  # the dead waiter's place was freed: nobody waits now
        assert repr(cond).endswith(", 0)>")
        cond.notify()  # and a notify with nobody to wake returns at once
    a.close()
    b.close()


def test_notify_one_goes_to_a_live_waiter_not_to_a_killed_one(no_shm_leaks):
    cond = Condition(Lock())
    a, b = Pipe()
    # The oldest waiter: notify's first pick.
    victim = start(PLAIT.Process, _wait_and_report, cond, b)
    assert a.recv(timeout=20) == "ready"
    survivor = start(PLAIT.Process, _wait_and_report, cond, b)
    assert a.recv(timeout=20) == "ready"
    with cond:
        pass
    os.kill(victim.pid, signal.SIGKILL)
    assert finish(victim) == -signal.SIGKILL
    with cond:
        cond.notify()
    assert a.recv(timeout=10) is True
    assert finish(survivor) == 0
    a.close()
    b.close()


def test_broken_barrier_errors_read_the_same_for_threads_and_processes():
    """One Barrier algorithm: the same causes, the same words, whichever world."""
    import plait.threading

    texts = []
    for barrier in (plait.threading.Barrier(2), Barrier(2)):
        with pytest.raises(threading.BrokenBarrierError) as timed_out:
            barrier.wait(0.05)
        with pytest.raises(threading.BrokenBarrierError) as broken:
            barrier.wait()
        where = f"{type(barrier).__module__}.Barrier at {id(barrier):#x}"
        texts.append(
            (
                str(timed_out.value).replace(where, "B"),
                str(broken.value).replace(where, "B"),
            )
        )
    assert texts[0] == texts[1] == ("<B: broken>: wait timed out", "<B: broken> is broken")
