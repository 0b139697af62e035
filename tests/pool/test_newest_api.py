"""The newest standard pool API on every version: buffersize=, terminate/kill_workers.

Each scenario runs on the standard module too where the running Python has the API.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import multiprocessing

import pytest

import plait.futures
from plait.pool import Pool, PoolTerminatedError
from tests.pool import tasks
from tests.support import wait_until


class Counted:
    """An input that counts how many items were read from it."""

    def __init__(self) -> None:
        self.read = 0

    def __iter__(self):
        for i in itertools.count():
            self.read += 1
            yield i


def _executors():
    kinds = [plait.futures.ProcessPoolExecutor]
    if hasattr(concurrent.futures.Executor.map, "__code__") and (
        "buffersize" in concurrent.futures.Executor.map.__code__.co_varnames
    ):
        kinds.append(concurrent.futures.ProcessPoolExecutor)
    return kinds


@pytest.mark.parametrize("executor", _executors())
@pytest.mark.timeout(60)
def test_executor_map_buffersize_reads_an_endless_input_a_little_ahead(executor, no_leaks):
    source = Counted()
    with executor(2) as ex:
        results = ex.map(tasks.square, source, buffersize=3)
        assert [next(results) for _ in range(10)] == [x * x for x in range(10)]
        assert source.read <= 10 + 3 + 1
        for bad, error in ((0, ValueError), (-1, ValueError), (1.5, TypeError)):
            with pytest.raises(error, match="buffersize"):
                ex.map(tasks.square, range(3), buffersize=bad)


def _pools():
    kinds = [Pool]
    if "buffersize" in multiprocessing.pool.Pool.imap.__code__.co_varnames:
        kinds.append(multiprocessing.get_context("fork").Pool)
    return kinds


@pytest.mark.parametrize("make_pool", _pools())
@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
@pytest.mark.timeout(60)
def test_pool_imap_buffersize_bounds_the_tasks_read_ahead(make_pool, method, no_leaks):
    source = Counted()
    with make_pool(2) as pool:
        results = getattr(pool, method)(tasks.square, source, 2, buffersize=2)
        got = sorted(next(results) for _ in range(10))
        read_ahead = 10 + 2 * 2 + 2  # what was consumed, buffersize chunks, one in hand
        if method == "imap":
            assert got == [x * x for x in range(10)]
        else:  # any ten of the items read so far
            assert len(set(got)) == 10 and set(got) <= {x * x for x in range(read_ahead)}
        assert source.read <= read_ahead
        with pytest.raises(ValueError, match="buffersize"):
            getattr(pool, method)(tasks.square, range(3), 1, 0)


def _with_stop_workers():
    kinds = [plait.futures.ProcessPoolExecutor]
    if hasattr(concurrent.futures.ProcessPoolExecutor, "terminate_workers"):
        kinds.append(concurrent.futures.ProcessPoolExecutor)
    return kinds


@pytest.mark.parametrize("executor", _with_stop_workers())
@pytest.mark.parametrize("how", ["terminate_workers", "kill_workers"])
@pytest.mark.timeout(60)
def test_stopping_the_workers_fails_the_running_and_cancels_the_rest(executor, how, no_leaks):
    ex = executor(1)
    running = ex.submit(tasks.sleep_return, 30)
    waiting = ex.submit(tasks.square, 3)
    assert wait_until(running.running, 30)
    getattr(ex, how)()
    with pytest.raises(concurrent.futures.BrokenExecutor):
        running.result(30)
    assert waiting.cancelled() or isinstance(waiting.exception(30), PoolTerminatedError)
    with pytest.raises(RuntimeError):
        ex.submit(tasks.square, 1)
    ex.shutdown()


@pytest.mark.parametrize("how", ["terminate_workers", "kill_workers"])
@pytest.mark.timeout(60)
def test_terminate_workers_sends_sigterm_and_kill_workers_sigkill(how, no_leaks, tmp_path):
    path = tmp_path / "signal"
    ex = plait.futures.ProcessPoolExecutor(1)
    future = ex.submit(tasks.note_sigterm_and_sleep, str(path))
    ready = tmp_path / "signal.ready"  # its handler is set
    assert wait_until(ready.exists, 30)
    getattr(ex, how)()
    with pytest.raises(concurrent.futures.BrokenExecutor):
        future.result(30)
    assert path.exists() == (how == "terminate_workers")
