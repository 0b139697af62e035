"""The pool's scenarios on a real local Ray (2 CPUs), started and stopped by the module.

Pools made with ``address=None`` use the Ray this module started and leave it running.
``max_retries`` is 1, so a task that kills its worker gives up after one retry.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
from multiprocessing.pool import RemoteTraceback

import pytest

from plait.pool import WorkerLostError
from plait.pool.backends import RemoteWorkerLostError, UnsupportedOptionError
from tests.pool.cluster import tasks
from tests.pool.cluster.conftest import cluster_executor, cluster_pool
from tests.support import run_python

ray = pytest.importorskip("ray")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.fixture(scope="module")
def local_ray():
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": ROOT}},
    )
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def pool(local_ray):
    p = cluster_pool(backend="ray", backend_options={"max_retries": 1})
    yield p
    p.terminate()


@pytest.mark.timeout(120)
def test_calls_give_what_the_standard_pool_gives(pool):
    with multiprocessing.get_context("spawn").Pool(2) as standard:
        for p in (standard, pool):
            assert p.map(tasks.square, range(100)) == [x * x for x in range(100)]
            assert p.starmap(tasks.add, [(1, 2), (3, 4)]) == [3, 7]
            assert p.apply_async(tasks.add, (2, 3)).get(60) == 5
            assert list(p.imap(tasks.square, range(30), 3)) == [x * x for x in range(30)]
            assert sorted(p.imap_unordered(tasks.square, range(30))) == [x * x for x in range(30)]


@pytest.mark.timeout(60)
def test_task_error_keeps_its_remote_traceback(pool):
    with pytest.raises(ValueError, match="bad item 3") as info:
        pool.apply(tasks.fail, (3,))
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "in fail" in str(info.value.__cause__)


@pytest.mark.timeout(60)
def test_tiny_tasks_and_endless_input(pool):
    assert pool.map(tasks.square, range(20_000)) == [x * x for x in range(20_000)]
    it = pool.imap(tasks.square, iter(int, 1))  # endless zeros
    assert [next(it) for _ in range(100)] == [0] * 100


@pytest.mark.timeout(90)
def test_per_task_timeout_raises_and_the_pool_goes_on(pool):
    slow = pool.apply_async(tasks.sleep_return, (60, "late"), timeout=1.0)
    with pytest.raises(multiprocessing.TimeoutError, match="ran over its timeout"):
        slow.get(30)
    assert pool.map(tasks.square, range(10), timeout=30) == [x * x for x in range(10)]


@pytest.mark.timeout(120)
def test_task_that_kills_every_worker_fails_alone(pool):
    it = pool.imap(tasks.kill_self_on_3, range(6), 1)
    outcomes = []
    for _ in range(6):
        try:
            outcomes.append(next(it, "end"))
        except WorkerLostError as exc:
            outcomes.append(exc)
    assert [o for o in outcomes if not isinstance(o, BaseException)] == [0, 1, 2, 4, 5]
    lost = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(lost) == 1 and isinstance(lost[0], RemoteWorkerLostError)
    assert pool.map(tasks.square, range(4)) == [0, 1, 4, 9]


@pytest.mark.timeout(60)
def test_executor_and_unsupported_options(local_ray):
    with cluster_executor(backend="ray") as ex:
        assert ex.submit(tasks.add, 2, 3).result(60) == 5
        assert list(ex.map(tasks.add, range(5), range(5), timeout=60)) == [0, 2, 4, 6, 8]
    with pytest.raises(UnsupportedOptionError, match="initializer"):
        cluster_pool(backend="ray", initializer=tasks.remember, initargs=(1,))
    with pytest.raises(UnsupportedOptionError, match="maxtasksperchild"):
        cluster_pool(backend="ray", maxtasksperchild=3)


@pytest.mark.timeout(60)
def test_unreachable_head_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    code = (
        "import sys\n"
        "from plait.pool.backends import SchedulerUnreachableError, make_engine\n"
        "try:\n"
        "    make_engine('ray', sys.argv[1], options={'connect_timeout': 2})\n"
        "except SchedulerUnreachableError as exc:\n"
        "    print(type(exc).__name__, exc.address, exc.timeout)\n"
    )
    where = f"127.0.0.1:{port}"
    out = run_python("-c", code, where, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["SchedulerUnreachableError", where, "2"]


def test_an_address_beside_an_initialized_ray_is_refused(local_ray):
    with pytest.raises(UnsupportedOptionError, match="already initialized"):
        cluster_pool(backend="ray", address="127.0.0.1:6379")
