"""The pool's scenarios on a real Dask ``LocalCluster``: the same calls, the same answers.

One cluster serves the module (2 worker processes, one thread each, under nannies);
``allowed-failures`` is 1 so a task that kills its worker gives up after one retry, and
``worker-saturation`` 1.0 gives a worker one task at a time, so that a dying worker
takes no bystander with it (Dask counts a death against every task the worker held).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import pickle
import socket
import threading
from multiprocessing.pool import RemoteTraceback
from pathlib import Path

import pytest

from plait.pool import PoolTerminatedError, TimeoutError, WorkerLostError
from plait.pool.backends import (
    RemoteWorkerLostError,
    SchedulerUnreachableError,
    UnsupportedOptionError,
)
from tests.pool.cluster import tasks
from tests.pool.cluster.conftest import cluster_executor, cluster_pool
from tests.support import child_pids, run_python, wait_until

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")


@pytest.fixture(scope="module")
def cluster():
    """The module's cluster: its scheduler's address and a client of the tests."""
    config = {
        "distributed.scheduler.allowed-failures": 1,
        "distributed.scheduler.worker-saturation": 1.0,
    }
    with dask.config.set(config):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        client = distributed.Client(cluster, set_as_default=False)
        try:
            yield cluster.scheduler_address, client
        finally:
            client.close()
            cluster.close()


@pytest.fixture
def address(cluster):
    return cluster[0]


@pytest.fixture
def pool(address):
    p = cluster_pool(backend="dask", address=address)
    yield p
    p.terminate()


@pytest.fixture(params=["standard", "dask"])
def any_pool(request, address):
    """The standard ``multiprocessing.Pool(2)`` and a pool on the Dask cluster."""
    if request.param == "standard":
        p = multiprocessing.get_context("spawn").Pool(2)
    else:
        p = cluster_pool(backend="dask", address=address)
    yield p
    p.terminate()
    p.join()


# -- the same calls, the same answers ---------------------------------------------------


@pytest.mark.timeout(60)
def test_calls_give_what_the_standard_pool_gives(any_pool):
    assert any_pool.map(tasks.square, range(100)) == [x * x for x in range(100)]
    assert any_pool.starmap(tasks.add, [(1, 2), (3, 4)]) == [3, 7]
    assert any_pool.apply_async(tasks.add, (2, 3)).get(30) == 5
    assert any_pool.apply(tasks.square, (7,)) == 49
    assert list(any_pool.imap(tasks.square, range(50), 3)) == [x * x for x in range(50)]
    assert sorted(any_pool.imap_unordered(tasks.square, range(50))) == [x * x for x in range(50)]
    assert any_pool.map_async(tasks.square, [3, 4]).get(30) == [9, 16]


@pytest.mark.timeout(60)
def test_task_error_keeps_its_remote_traceback(any_pool):
    with pytest.raises(ValueError, match="bad item 3") as info:
        any_pool.apply(tasks.fail, (3,))
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "in fail" in str(info.value.__cause__)


@pytest.mark.timeout(60)
def test_each_failed_item_of_imap_raises_at_its_place(any_pool):
    it = any_pool.imap(tasks.fail, range(3))
    for i in range(3):
        with pytest.raises(ValueError, match=f"bad item {i}"):
            next(it)


# -- batching, laziness, progress ----------------------------------------------------------


@pytest.mark.timeout(60)
def test_tiny_tasks_travel_in_few_dask_tasks(pool, cluster):
    with distributed.get_task_stream(cluster[1]) as stream:
        assert pool.map(tasks.square, range(20_000)) == [x * x for x in range(20_000)]
    chunks = [t for t in stream.data if "run_chunk" in str(t["key"])]
    assert 0 < len(chunks) <= 20_000 // 20, len(chunks)


@pytest.mark.timeout(60)
def test_imap_over_endless_input_reads_a_bounded_amount(pool):
    pulled = itertools.count()

    def endless():
        for i in itertools.count():
            next(pulled)
            yield i

    it = pool.imap(tasks.square, endless())
    assert [next(it) for _ in range(200)] == [x * x for x in range(200)]
    read = next(pulled)
    assert read < 200 + 100_000, read
    assert [next(it) for _ in range(100)] == [x * x for x in range(200, 300)]


@pytest.mark.timeout(60)
def test_progress_and_stats(pool):
    assert pool.map(tasks.square, range(1000), progress=True) == [x * x for x in range(1000)]
    stats = pool.stats()
    assert stats.tasks_done == 1000
    assert len(stats.workers) == 2
    assert stats.in_flight == 0


@pytest.mark.timeout(60)
def test_callbacks_run_with_the_result(pool):
    got = []
    done = threading.Event()
    pool.apply_async(tasks.square, (6,), callback=lambda v: (got.append(v), done.set()))
    assert done.wait(30)
    assert got == [36]


# -- failures --------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_per_task_timeout_raises_and_the_pool_goes_on(pool):
    slow = pool.apply_async(tasks.sleep_return, (60, "late"), timeout=1.0)
    with pytest.raises(multiprocessing.TimeoutError, match="ran over its timeout") as info:
        slow.get(30)
    assert isinstance(info.value, TimeoutError)
    assert pool.map(tasks.square, range(10), timeout=20) == [x * x for x in range(10)]


@pytest.mark.timeout(120)
def test_task_that_kills_every_worker_fails_alone(pool):
    it = pool.imap(tasks.kill_self_on_3, range(6), 1)
    outcomes = []
    for _ in range(6):
        try:
            outcomes.append(next(it, "end"))
        except WorkerLostError as exc:
            outcomes.append(exc)
    lost = [o for o in outcomes if isinstance(o, BaseException)]
    assert [o for o in outcomes if not isinstance(o, BaseException)] == [0, 1, 2, 4, 5]
    assert len(lost) == 1 and isinstance(lost[0], RemoteWorkerLostError)
    assert "tcp://" in lost[0].address and "died while running" in str(lost[0])
    assert pool.map(tasks.square, range(4)) == [0, 1, 4, 9]


@pytest.mark.timeout(120)
def test_worker_killed_once_is_retried_by_dask(pool, tmp_path):
    marker = str(tmp_path / "killed-once")
    assert pool.apply(tasks.kill_self_once, (5, marker)) == 5
    assert os.path.exists(marker)


@pytest.mark.timeout(60)
def test_unpicklable_argument_and_result_fail_their_task(pool):
    with pytest.raises((pickle.PicklingError, TypeError)):
        pool.apply(tasks.square, (threading.Lock(),))
    with pytest.raises(multiprocessing.pool.MaybeEncodingError):
        pool.apply(tasks.unpicklable_result)
    assert pool.apply(tasks.square, (3,)) == 9


@pytest.mark.timeout(60)
def test_terminate_fails_what_is_pending(address):
    p = cluster_pool(backend="dask", address=address)
    slow = p.apply_async(tasks.sleep_return, (2, "x"))
    queued = [p.apply_async(tasks.sleep_return, (2, i)) for i in range(6)]
    p.terminate()
    for result in [slow, *queued]:
        with pytest.raises(PoolTerminatedError):
            result.get(10)
    with pytest.raises(ValueError, match="Pool not running"):
        p.apply_async(tasks.square, (1,))


# -- options and bad input -------------------------------------------------------------


@pytest.mark.timeout(60)
def test_initializer_runs_on_every_worker(address):
    with cluster_pool(
        backend="dask", address=address, initializer=tasks.remember, initargs=("hello",)
    ) as p:
        seen = p.map(tasks.initialized, range(20), 1)
    assert all("hello" in s for s in seen)


@pytest.mark.timeout(60)
def test_executor_submit_and_map(address):
    with cluster_executor(backend="dask", address=address) as ex:
        assert ex.submit(tasks.add, 2, 3).result(30) == 5
        assert list(ex.map(tasks.add, range(5), range(5), timeout=30)) == [0, 2, 4, 6, 8]


@pytest.mark.timeout(60)
def test_unreachable_scheduler_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    where = f"tcp://127.0.0.1:{port}"
    with pytest.raises(SchedulerUnreachableError, match=where) as info:
        cluster_pool(backend="dask", address=where, backend_options={"connect_timeout": 2})
    assert isinstance(info.value, ConnectionError)
    assert info.value.timeout == 2


def test_options_the_backend_cannot_honour(address):
    with pytest.raises(UnsupportedOptionError, match="maxtasksperchild"):
        cluster_pool(backend="dask", address=address, maxtasksperchild=5)
    with pytest.raises(UnsupportedOptionError, match="context"):
        cluster_pool(backend="dask", address=address, context=multiprocessing.get_context())
    with pytest.raises(UnsupportedOptionError, match="'workers'.*connect_timeout"):
        cluster_pool(backend="dask", address=address, backend_options={"workers": 4})
    with pytest.raises(TypeError, match="address="):
        cluster_pool(backend="dask", address=8786)


@pytest.mark.timeout(120)
def test_without_address_the_pool_runs_its_own_cluster_and_stops_it(address):
    before = child_pids()
    with cluster_pool(2, backend="dask") as p:
        assert p.map(tasks.square, range(10)) == [x * x for x in range(10)]
        assert len(child_pids() - before) >= 2
        workers = p.stats().workers
        assert len(workers) == 2 and not set(workers) & {address}
    assert wait_until(lambda: child_pids() <= before, 30), child_pids() - before


@pytest.mark.timeout(120)
def test_functions_of_main_travel_by_value(address):
    code = (
        "import sys\n"
        "from tests.pool.cluster.conftest import cluster_pool\n"
        "def triple(x):\n"
        "    return 3 * x\n"
        "if __name__ == '__main__':\n"
        "    with cluster_pool(backend='dask', address=sys.argv[1]) as pool:\n"
        "        print(pool.map(triple, range(5)), pool.apply(lambda: 'lambda'))\n"
    )
    root = str(Path(__file__).resolve().parents[3])  # the repository, where tests/ is
    out = run_python("-c", code, address, timeout=100, cwd=root)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[0, 3, 6, 9, 12] lambda"
