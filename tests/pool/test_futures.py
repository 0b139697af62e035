"""The executors beside ``concurrent.futures``: same results; a dead worker breaks nothing."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal

import pytest

import plait.futures
from plait.futures import TimeoutError, WorkerLostError
from tests.conftest import wait_until
from tests.pool import tasks

EXECUTORS = [
    pytest.param(concurrent.futures.ProcessPoolExecutor, id="std-process"),
    pytest.param(plait.futures.ProcessPoolExecutor, id="plait-process"),
    pytest.param(concurrent.futures.ThreadPoolExecutor, id="std-thread"),
    pytest.param(plait.futures.ThreadPoolExecutor, id="plait-thread"),
]


def check_leaks(request, cls) -> None:
    if cls.__module__.startswith("plait"):
        request.getfixturevalue("no_leaks")


@pytest.mark.parametrize("cls", EXECUTORS)
@pytest.mark.timeout(60)
def test_submit_map_and_the_future_helpers(cls, request):
    check_leaks(request, cls)
    with cls(2) as ex:
        futures = [ex.submit(tasks.add, x, b=1) for x in range(10)]
        done, _ = concurrent.futures.wait(futures, timeout=30)
        assert len(done) == 10
        assert sorted(f.result() for f in concurrent.futures.as_completed(futures)) == list(
            range(1, 11)
        )
        assert list(ex.map(tasks.add, range(5), range(5, 20))) == [5, 7, 9, 11, 13]
        assert list(ex.map(tasks.square, range(50), chunksize=7)) == [x * x for x in range(50)]
        failing = ex.submit(tasks.fail, 3)
        with pytest.raises(ValueError, match="bad item 3"):
            failing.result(30)
        assert isinstance(failing.exception(), ValueError)
        it = ex.map(tasks.fail_on_odd, range(4))
        assert next(it) == 0
        with pytest.raises(ValueError, match="bad item 1"):
            next(it)

        async def main():
            return await asyncio.wrap_future(ex.submit(tasks.square, 9))

        assert asyncio.run(main()) == 81
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(tasks.square, 1)


@pytest.mark.parametrize("cls", EXECUTORS)
@pytest.mark.timeout(60)
def test_map_timeout_counts_from_the_call(cls, request):
    check_leaks(request, cls)
    with cls(2) as ex:
        # The first answer comes well within the timeout even while workers start on a
        # loaded machine; the second cannot.
        it = ex.map(tasks.sleep_return, [0.0, 6.0], timeout=3)
        assert next(it) is None
        with pytest.raises(concurrent.futures.TimeoutError):
            next(it)


@pytest.mark.parametrize("cls", EXECUTORS)
@pytest.mark.timeout(60)
def test_shutdown_cancel_futures(cls, request):
    check_leaks(request, cls)
    ex = cls(1)
    first = ex.submit(tasks.sleep_return, 0.5, "first")
    assert wait_until(first.running, 10)
    rest = [ex.submit(tasks.square, x) for x in range(20)]
    ex.shutdown(wait=True, cancel_futures=True)
    assert first.result() == "first"
    # The standard executor may have queued a few already; the rest never ran.
    cancelled = [f for f in rest if f.cancelled()]
    assert len(cancelled) >= 15
    assert all(f.result() == x * x for x, f in enumerate(rest) if not f.cancelled())


@pytest.mark.timeout(60)
def test_a_killed_worker_fails_only_its_future_and_the_executor_goes_on(no_leaks, tmp_path):
    path = str(tmp_path / "pid")
    with plait.futures.ProcessPoolExecutor(2) as ex:
        victim = ex.submit(tasks.report_pid_and_sleep, path, 30)
        others = [ex.submit(tasks.square, x) for x in range(20)]
        assert wait_until(lambda: os.path.exists(path) and os.path.getsize(path) > 0)
        with open(path) as f:
            os.kill(int(f.read()), signal.SIGKILL)
        with pytest.raises(WorkerLostError):
            victim.result(30)
        assert [f.result(30) for f in others] == [x * x for x in range(20)]
        assert ex.submit(tasks.square, 3).result(30) == 9


@pytest.mark.timeout(60)
def test_a_killed_worker_in_executor_map(no_leaks):
    with plait.futures.ProcessPoolExecutor(2) as ex:
        outcomes = []
        it = ex.map(tasks.kill_self_on, range(12), [7] * 12, chunksize=1)
        for _ in range(12):
            try:
                outcomes.append(next(it))
            except WorkerLostError as exc:
                outcomes.append(exc)
                break
        assert outcomes[:7] == list(range(7))
        assert isinstance(outcomes[7], WorkerLostError)
        assert outcomes[7].signal == signal.SIGKILL
        assert list(ex.map(tasks.square, range(4))) == [0, 1, 4, 9]


@pytest.mark.timeout(60)
def test_task_timeout_stops_the_task(no_leaks):
    with plait.futures.ProcessPoolExecutor(2, task_timeout=0.3) as ex:
        slow = ex.submit(tasks.sleep_return, 30)
        fast = ex.submit(tasks.square, 4)
        with pytest.raises(TimeoutError):
            slow.result(30)
        assert fast.result(30) == 16
    with pytest.raises(ValueError):
        plait.futures.ProcessPoolExecutor(1, task_timeout=-1)
