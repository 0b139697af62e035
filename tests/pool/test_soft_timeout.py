"""Soft timeouts: ``SoftTimeoutError`` raised inside the task before the hard kill."""

from __future__ import annotations

import pytest

import plait
from plait.futures import ProcessPoolExecutor
from plait.pool import Pool, SoftTimeoutError, ThreadPool, TimeoutError
from tests.pool import tasks


@pytest.mark.timeout(60)
def test_a_task_catches_its_soft_timeout_and_returns(no_leaks):
    with Pool(1) as pool:
        assert pool.apply(tasks.sleep_until_soft_timeout, (30,), timeout=(0.2, 20)) == (
            "cleaned up"
        )
        # The worker lives on: no replacement was needed.
        assert pool.stats().workers_replaced == 0
        assert pool.map(tasks.sleep_until_soft_timeout, [0, 30], timeout=(0.2, 20)) == [
            "finished",
            "cleaned up",
        ]


@pytest.mark.timeout(60)
def test_an_uncaught_soft_timeout_fails_the_task_with_it(no_leaks):
    with Pool(1) as pool:
        with pytest.raises(SoftTimeoutError) as info:
            pool.apply(tasks.sleep_return, (30,), timeout=(0.2, None))
        assert plait.SoftTimeoutError is SoftTimeoutError
        # Not an OSError (builtin TimeoutError is one): task code catching OSError
        # around I/O must not swallow it.
        assert not isinstance(info.value, OSError | TimeoutError)
        assert pool.apply(tasks.square, (4,), timeout=(0.2, 5)) == 16  # a task well in time


@pytest.mark.timeout(60)
def test_the_hard_timeout_kills_a_task_that_ignores_the_soft_one(no_leaks):
    with Pool(1) as pool:
        with pytest.raises(TimeoutError, match="ran over its timeout") as info:
            pool.apply(tasks.ignore_soft_timeout, (30,), timeout=(0.1, 0.5))
        assert not isinstance(info.value, SoftTimeoutError)
        assert pool.apply(tasks.square, (5,)) == 25


@pytest.mark.timeout(60)
def test_the_executor_takes_soft_timeout(no_leaks):
    with ProcessPoolExecutor(1, task_timeout=20, soft_timeout=0.2) as ex:
        assert ex.submit(tasks.sleep_until_soft_timeout, 30).result(30) == "cleaned up"
        assert list(ex.map(tasks.sleep_until_soft_timeout, [0, 30])) == [
            "finished",
            "cleaned up",
        ]


def test_bad_soft_timeouts_are_refused():
    with pytest.raises(ValueError, match=r"soft timeout \(2.0 s\) is past the hard one \(1.0 s\)"):
        ProcessPoolExecutor(1, task_timeout=1, soft_timeout=2)
    with pytest.raises(ValueError, match="soft timeout needs local worker processes"):
        ProcessPoolExecutor(1, soft_timeout=2, backend="dask", address="tcp://127.0.0.1:1")
    with Pool(1) as pool:
        with pytest.raises(ValueError, match="past the hard one"):
            pool.apply_async(tasks.square, (1,), timeout=(5, 1))
        with pytest.raises(TypeError, match=r"\(soft, hard\)"):
            pool.apply_async(tasks.square, (1,), timeout=(1, 2, 3))
        with pytest.raises(ValueError, match="soft timeout"):
            pool.map(tasks.square, [1], timeout=(-1, 2))
    with ThreadPool(1) as pool, pytest.raises(ValueError, match="cannot stop a running thread"):
        pool.apply(tasks.square, (1,), timeout=(1, 2))
