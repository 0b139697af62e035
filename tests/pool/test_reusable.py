"""idle_timeout= and get_reusable_executor: workers that leave when idle and come back."""

from __future__ import annotations

import pytest

from plait.futures import get_reusable_executor
from plait.pool import Pool
from tests.pool import tasks
from tests.support import wait_until


@pytest.mark.timeout(90)
def test_idle_workers_exit_and_come_back_with_work(no_leaks):
    with Pool(2, idle_timeout=0.3) as pool:
        assert pool.map(tasks.square, range(10)) == [x * x for x in range(10)]
        assert wait_until(lambda: not pool.stats().workers, 30), pool.stats()
        assert pool.map(tasks.square, range(10)) == [x * x for x in range(10)]
        assert pool.stats().workers_replaced == 0
        assert pool.apply(tasks.square, (3,)) == 9


@pytest.mark.timeout(90)
def test_the_reusable_executor_is_the_same_while_its_arguments_are(no_leaks):
    ex = get_reusable_executor(max_workers=2, idle_timeout=0.3)
    try:
        assert get_reusable_executor(max_workers=2, idle_timeout=0.3) is ex
        assert ex.submit(tasks.square, 5).result(30) == 25
        assert wait_until(lambda: not ex.stats().workers, 30), ex.stats()
        assert list(ex.map(tasks.square, range(5))) == [0, 1, 4, 9, 16]
        # Other arguments: the live one is shut down and replaced.
        other = get_reusable_executor(max_workers=1, idle_timeout=0.3)
        assert other is not ex and ex._shutdown
        assert other.submit(tasks.square, 6).result(30) == 36
        other.shutdown()
        # One its user shut down is replaced too.
        again = get_reusable_executor(max_workers=1, idle_timeout=0.3)
        assert again is not other
        assert again.submit(tasks.square, 7).result(30) == 49
    finally:
        get_reusable_executor(max_workers=1, idle_timeout=0.3).shutdown()


@pytest.mark.timeout(90)
def test_replacing_the_reusable_executor_does_not_wait_and_its_work_completes(no_leaks, tmp_path):
    release = tmp_path / "release"
    ex = get_reusable_executor(max_workers=1, idle_timeout=5)
    late = ex.submit(tasks.return_once_path_exists, str(release), "done")
    other = get_reusable_executor(max_workers=2, idle_timeout=5)  # returns before `late`
    try:
        assert not late.done()  # it runs until released: a replacement that waited for it hung
        release.touch()
        assert late.result(30) == "done"
        assert other.submit(tasks.square, 3).result(30) == 9
    finally:
        other.shutdown()
        ex.shutdown()


def test_a_bad_idle_timeout_is_refused():
    with pytest.raises(ValueError, match="idle_timeout"):
        Pool(1, idle_timeout=-1)
