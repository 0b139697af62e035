"""``AsyncResult.cancel()``: a cancelled call is dropped, or its worker is killed and replaced."""

from __future__ import annotations

import os
from concurrent.futures import CancelledError

import pytest

from plait.pool import Pool, ThreadPool
from tests.pool import tasks
from tests.support import wait_until

pytestmark = [pytest.mark.usefixtures("no_leaks"), pytest.mark.timeout(60)]


def started_pid(path) -> int:
    assert wait_until(lambda: path.exists() and path.read_text(), 10), "the task never started"
    return int(path.read_text())


def gone(pid: int) -> bool:
    return not os.path.exists(f"/proc/{pid}")


def test_cancelling_a_running_call_kills_its_worker_and_the_pool_goes_on(tmp_path):
    marker = tmp_path / "pid"
    errors = []
    with Pool(1) as pool:
        result = pool.apply_async(
            tasks.report_pid_and_sleep, (str(marker), 60), error_callback=errors.append
        )
        pid = started_pid(marker)
        assert not result.cancelled()
        assert result.cancel() is True
        assert result.cancelled()  # a method, as concurrent.futures.Future.cancelled
        with pytest.raises(CancelledError):
            result.get(timeout=5)
        assert result.ready() and not result.successful()
        assert isinstance(errors[0], CancelledError)
        assert wait_until(lambda: gone(pid), 10), f"worker {pid} still runs the cancelled call"
        assert pool.apply(tasks.square, (7,), timeout=30) == 49
        stats = pool.stats()
        assert pid not in stats.workers
        assert stats.workers_replaced == 1
        assert result.cancel() is False  # already cancelled


def test_calls_queued_behind_the_cancelled_one_run_on_the_replacement(tmp_path):
    marker = tmp_path / "pid"
    with Pool(1) as pool:
        doomed = pool.apply_async(tasks.report_pid_and_sleep, (str(marker), 60))
        behind = pool.apply_async(tasks.square, (5,))  # sent to the same worker, waits there
        pid = started_pid(marker)
        doomed.cancel()
        assert behind.get(timeout=30) == 25
        assert pid not in pool.stats().workers


def test_a_cancelled_call_waiting_in_the_worker_is_killed_when_it_comes_up(tmp_path):
    marker, release = tmp_path / "pid", tmp_path / "release"
    with Pool(1) as pool:
        first = pool.apply_async(tasks.return_once_path_exists, (str(release), "first"))
        doomed = pool.apply_async(tasks.report_pid_and_sleep, (str(marker), 60))  # prefetched
        assert wait_until(lambda: pool.stats().in_flight == 2, 10)
        assert doomed.cancel() is True  # while it waits in the worker, behind the first
        release.touch()
        assert first.get(timeout=30) == "first"  # the call before it is not disturbed
        with pytest.raises(CancelledError):
            doomed.get(timeout=5)
        assert pool.apply(tasks.square, (6,), timeout=30) == 36
        assert pool.stats().workers_replaced == 1


def test_cancelling_a_call_not_sent_yet_kills_nobody(tmp_path):
    release = tmp_path / "release"
    with Pool(1) as pool:
        first = pool.apply_async(tasks.return_once_path_exists, (str(release), "a"))
        second = pool.apply_async(tasks.return_once_path_exists, (str(release), "b"))
        unsent = pool.apply_async(tasks.square, (4,))  # the worker is busy until released
        assert unsent.cancel() is True
        with pytest.raises(CancelledError):
            unsent.get(timeout=1)
        release.touch()
        assert (first.get(timeout=30), second.get(timeout=30)) == ("a", "b")
        assert pool.stats().workers_replaced == 0


def test_a_finished_call_cannot_be_cancelled():
    with Pool(1) as pool:
        result = pool.apply_async(tasks.square, (3,))
        assert result.get(timeout=30) == 9
        assert result.cancel() is False
        assert not result.cancelled()
        assert result.get() == 9


def test_cancelling_a_map_kills_every_worker_running_it(tmp_path):
    paths = [str(tmp_path / f"pid{i}") for i in range(4)]

    def running():
        pids = set()
        for path in paths:
            if os.path.exists(path) and os.path.getsize(path):
                with open(path) as f:
                    pids.add(int(f.read()))
        return pids

    with Pool(2) as pool:
        result = pool.starmap_async(
            tasks.report_pid_and_sleep, [(path, 60) for path in paths], chunksize=1
        )
        # Both workers run a task of the map (in_flight also counts a task sent ahead).
        assert wait_until(lambda: len(running()) == 2, 30)
        victims = running()
        assert result.cancel() is True
        with pytest.raises(CancelledError):
            result.get(timeout=5)
        assert pool.map(tasks.square, range(4), timeout=30) == [0, 1, 4, 9]
        assert not victims & set(pool.stats().workers)


def test_a_thread_pool_drops_unsent_calls_but_cannot_stop_a_running_one(tmp_path):
    release = tmp_path / "release"
    with ThreadPool(1) as pool:
        running = pool.apply_async(tasks.return_once_path_exists, (str(release), "done"))
        assert wait_until(lambda: pool.stats().in_flight == 1, 10)
        waiting = pool.apply_async(tasks.square, (2,))
        assert waiting.cancel() is True
        assert running.cancel() is False
        release.touch()
        assert running.get(timeout=30) == "done"
        with pytest.raises(CancelledError):
            waiting.get(timeout=1)
