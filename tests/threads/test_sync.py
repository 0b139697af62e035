"""Locks, conditions, semaphores, events and barriers: plait behaves as threading does."""

import threading

import pytest

import plait.threading
from tests.support import wait_until


@pytest.fixture(params=[threading, plait.threading], ids=["threading", "plait"])
def tmod(request):
    return request.param


def start_all(tmod, target, n, *args):
    threads = [tmod.Thread(target=target, args=args) for _ in range(n)]
    for t in threads:
        t.start()
    return threads


def join_all(threads):
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)


def test_lock_errors_are_the_standard_ones(tmod):
    lock = tmod.Lock()
    with pytest.raises(RuntimeError):
        lock.release()
    with pytest.raises(ValueError):
        lock.acquire(timeout=-2)
    rlock = tmod.RLock()
    with pytest.raises(RuntimeError):
        rlock.release()
    with rlock, rlock:
        assert not tmod.Lock().locked()


@pytest.mark.timeout(20)
def test_condition_notify_n_wakes_exactly_n(tmod, no_leaks):
    cond = tmod.Condition()
    woken = []
    ready = []

    def waiter():
        with cond:
            ready.append(1)
            if cond.wait(10):
                woken.append(1)

    threads = start_all(tmod, waiter, 5)
    assert wait_until(lambda: len(ready) == 5)
    assert wait_until(lambda: len(cond._waiters) == 5)
    with cond:
        cond.notify(2)
    assert wait_until(lambda: len(woken) == 2)
    with cond:
        cond.notify_all()
    join_all(threads)
    assert len(woken) == 5


@pytest.mark.timeout(20)
def test_condition_wait_for_predicate_and_timeout(tmod, no_leaks):
    cond = tmod.Condition(tmod.Lock())
    box = []
    with cond:
        assert cond.wait_for(lambda: box, timeout=0.01) == []
        assert cond.wait(0.01) is False

    def producer():
        with cond:
            box.append("x")
            cond.notify()

    t = tmod.Thread(target=producer)
    with cond:
        t.start()
        assert cond.wait_for(lambda: box, timeout=10) == ["x"]
    t.join(10)


def test_condition_requires_the_lock(tmod):
    cond = tmod.Condition()
    with pytest.raises(RuntimeError):
        cond.wait(0)
    with pytest.raises(RuntimeError):
        cond.notify()


def test_semaphore_counts_and_bounded_refuses_extra_release(tmod):
    sem = tmod.Semaphore(2)
    assert sem.acquire() and sem.acquire(timeout=0.01)
    assert not sem.acquire(blocking=False)
    assert not sem.acquire(timeout=0.01)
    sem.release(2)
    with pytest.raises(ValueError):
        sem.acquire(False, timeout=1)
    with pytest.raises(ValueError):
        tmod.Semaphore(-1)
    bounded = tmod.BoundedSemaphore(1)
    with bounded:
        pass
    with pytest.raises(ValueError, match="too many times"):
        bounded.release()


@pytest.mark.timeout(20)
def test_semaphore_wakes_blocked_acquirers(tmod, no_leaks):
    sem = tmod.Semaphore(0)
    got = []
    threads = start_all(tmod, lambda: got.append(sem.acquire(timeout=10)), 3)
    sem.release(3)
    join_all(threads)
    assert got == [True, True, True]


@pytest.mark.timeout(20)
def test_event_set_wakes_every_waiter(tmod, no_leaks):
    event = tmod.Event()
    results = []
    assert event.wait(0.01) is False
    threads = start_all(tmod, lambda: results.append(event.wait(10)), 4)
    event.set()
    join_all(threads)
    assert results == [True] * 4 and event.is_set()
    event.clear()
    assert not event.is_set()


@pytest.mark.timeout(20)
def test_barrier_trips_with_distinct_indices_and_runs_action_once(tmod, no_leaks):
    actions = []
    barrier = tmod.Barrier(3, action=lambda: actions.append(1))
    indices = []
    threads = start_all(tmod, lambda: indices.append(barrier.wait(10)), 3)
    join_all(threads)
    assert sorted(indices) == [0, 1, 2] and actions == [1]
    assert barrier.n_waiting == 0 and not barrier.broken and barrier.parties == 3


@pytest.mark.timeout(20)
def test_barrier_breaks_on_timeout_for_everyone(tmod, no_leaks):
    barrier = tmod.Barrier(3)
    outcomes = []

    def party(timeout):
        try:
            barrier.wait(timeout)
            outcomes.append("passed")
        except tmod.BrokenBarrierError:
            outcomes.append("broken")

    slow = tmod.Thread(target=party, args=(10,))
    slow.start()
    assert wait_until(lambda: barrier.n_waiting == 1)
    party(0.05)  # the second party gives up: the barrier breaks for the first too
    join_all([slow])
    assert outcomes == ["broken", "broken"] and barrier.broken
    with pytest.raises(tmod.BrokenBarrierError):
        barrier.wait(1)
    barrier.reset()
    assert not barrier.broken


@pytest.mark.timeout(20)
def test_barrier_abort_and_reset(tmod, no_leaks):
    barrier = tmod.Barrier(2)
    errors = []

    def party():
        try:
            barrier.wait(10)
        except tmod.BrokenBarrierError:
            errors.append("broken")

    t = tmod.Thread(target=party)
    t.start()
    assert wait_until(lambda: barrier.n_waiting == 1)
    barrier.abort()
    join_all([t])
    assert errors == ["broken"]
    barrier.reset()
    threads = start_all(tmod, lambda: barrier.wait(10), 2)
    join_all(threads)
    assert not barrier.broken


@pytest.mark.timeout(20)
def test_barrier_action_error_breaks_it(tmod, no_leaks, monkeypatch):
    monkeypatch.setattr(threading, "excepthook", lambda args: None)

    def action():
        raise OSError("action failed")

    barrier = tmod.Barrier(2, action=action)
    errors = []

    def party():
        try:
            barrier.wait(10)
        except (OSError, tmod.BrokenBarrierError) as exc:
            errors.append(type(exc))

    threads = start_all(tmod, party, 2)
    join_all(threads)
    assert sorted(e.__name__ for e in errors) == ["BrokenBarrierError", "OSError"]
    assert barrier.broken
