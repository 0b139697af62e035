"""Callbacks run outside the pool's lock, one at a time, in the order results came."""

from __future__ import annotations

import threading

import pytest

from plait.pool import Pool, ThreadPool
from tests.pool import tasks


@pytest.mark.parametrize("cls", [Pool, ThreadPool])
@pytest.mark.timeout(60)
def test_a_sleeping_callback_does_not_delay_another_threads_apply_async(cls, no_leaks):
    entered, release = threading.Event(), threading.Event()

    def slow_callback(value):
        entered.set()
        release.wait(30)

    submitted = []

    def other_thread():
        submitted.append(pool.apply_async(tasks.square, (7,)))

    with cls(2) as pool:
        first = pool.apply_async(tasks.square, (3,), callback=slow_callback)
        assert entered.wait(30)
        other = threading.Thread(target=other_thread)
        other.start()
        other.join(20)
        returned = not other.is_alive()
        ready_during_callback = first.ready()
        release.set()
        other.join(30)
        assert returned, "apply_async waited for another job's callback"
        assert not ready_during_callback  # ready once its callback has returned
        assert first.get(30) == 9 and submitted[0].get(30) == 49


@pytest.mark.parametrize("cls", [Pool, ThreadPool])
@pytest.mark.timeout(60)
def test_a_result_is_ready_only_once_its_callback_has_run(cls, no_leaks):
    # As in multiprocessing.pool: wait() returning means the callback has run.
    seen = []
    with cls(2) as pool:
        for i in range(20):
            pool.map_async(tasks.square, [i], callback=seen.append).wait(30)
            assert seen[-1] == [i * i]
        with pytest.raises(ValueError):
            pool.apply_async(tasks.fail, (1,), error_callback=seen.append).get(30)
        assert isinstance(seen[-1], ValueError)


@pytest.mark.timeout(60)
def test_callbacks_run_in_the_order_the_results_came(no_leaks):
    order = []
    with Pool(1) as pool:  # one worker answers in the order it was sent
        results = [pool.apply_async(tasks.square, (i,), callback=order.append) for i in range(50)]
        for r in results:
            r.wait(30)
    assert order == [i * i for i in range(50)]


@pytest.mark.timeout(60)
def test_a_callback_may_submit_and_wait_for_more_work(no_leaks):
    got = []
    done = threading.Event()

    def callback(value):
        # Under the engine's lock this waited on a result the lock held back.
        got.append(pool.apply_async(tasks.square, (value,)).get(30))
        done.set()

    with ThreadPool(2) as pool:
        pool.apply_async(tasks.square, (3,), callback=callback)
        assert done.wait(30)
    assert got == [81]
