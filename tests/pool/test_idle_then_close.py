"""Work handed to a pool whose workers all left idle, just before ``close()`` or
``shutdown()``: the workers come back for it, and join/shutdown end (they hung)."""

from __future__ import annotations

import pytest

from plait.futures import ProcessPoolExecutor
from plait.pool import Pool
from tests.support import wait_until

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("no_leaks")]


def square(x):
    return x * x


def wait_for_idle_exit(stats):
    assert wait_until(lambda: not stats().workers, 20), "the workers did not leave idle"


def test_a_map_submitted_then_closed_after_the_workers_left_idle_completes():
    pool = Pool(2, idle_timeout=0.2)
    assert pool.map(square, range(4)) == [0, 1, 4, 9]
    wait_for_idle_exit(pool.stats)
    result = pool.map_async(square, range(4))
    pool.close()
    pool.join(30)
    assert result.get(10) == [0, 1, 4, 9]


def test_an_executor_shut_down_after_its_workers_left_idle_runs_what_was_submitted():
    executor = ProcessPoolExecutor(2, idle_timeout=0.2)
    assert executor.submit(square, 3).result(30) == 9
    wait_for_idle_exit(executor.stats)
    future = executor.submit(square, 5)
    executor.shutdown(wait=True)
    assert future.result(0) == 25
