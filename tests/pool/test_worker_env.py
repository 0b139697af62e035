"""worker_env= and the default cap on the BLAS/OpenMP threads of each worker."""

from __future__ import annotations

import os

import pytest

import plait.process
from plait.futures import ProcessPoolExecutor
from plait.pool import Pool
from plait.pool.pool import THREAD_VARIABLES
from tests.pool import tasks
from tests.support import run_python

CAPPED = ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"]


@pytest.fixture
def no_thread_variables(monkeypatch):
    for name in CAPPED + ["BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"]:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.timeout(60)
def test_worker_env_is_set_in_every_worker(no_leaks):
    with Pool(2, worker_env={"PLAIT_TEST_COLOUR": "blue"}) as pool:
        assert pool.map(tasks.environment, [["PLAIT_TEST_COLOUR"]] * 4) == [["blue"]] * 4
    with ProcessPoolExecutor(1, worker_env={"PLAIT_TEST_COLOUR": "red"}) as ex:
        assert ex.submit(tasks.environment, ["PLAIT_TEST_COLOUR"]).result(30) == ["red"]


@pytest.mark.timeout(60)
def test_workers_times_threads_stays_within_the_cpus(no_leaks, no_thread_variables):
    share = str(max(1, plait.process.cpu_count() // 2))
    with Pool(2) as pool:
        assert pool.apply(tasks.environment, (CAPPED,)) == [share] * 3
    with Pool(2, cap_threads=False) as pool:  # how to turn it off
        assert pool.apply(tasks.environment, (CAPPED,)) == [None] * 3
    with Pool(2, worker_env={"OMP_NUM_THREADS": "7"}) as pool:  # the user's choice wins
        assert pool.apply(tasks.environment, (CAPPED,)) == ["7", None, None]


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.timeout(120)
def test_numpy_in_a_worker_runs_capped_blas_threads(method, no_leaks, no_thread_variables):
    pytest.importorskip("numpy")
    pytest.importorskip("threadpoolctl")
    if plait.process.cpu_count() < 2:
        pytest.skip("one CPU: every BLAS runs one thread anyway")
    # Loaded in this process first: a forked worker inherits a BLAS pool already made.
    assert tasks.blas_threads() != [1]
    with Pool(plait.process.cpu_count(), context=plait.process.get_context(method)) as pool:
        assert pool.apply(tasks.blas_threads) == [1]


def test_bad_worker_env_is_refused_before_any_worker_starts():
    with pytest.raises(TypeError, match="worker_env takes strings: 'N': 4"):
        Pool(1, worker_env={"N": 4})
    with pytest.raises(
        ValueError, match="worker_env=, max_memory_per_child= and idle_timeout= need local"
    ):
        Pool(1, backend="dask", address="tcp://127.0.0.1:1", worker_env={"A": "b"})


@pytest.mark.timeout(60)
def test_the_parent_is_not_capped(no_leaks):
    before = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    with Pool(2, worker_env={"PLAIT_TEST_COLOUR": "green"}) as pool:
        pool.apply(tasks.square, (2,))
    assert {name: os.environ.get(name) for name in THREAD_VARIABLES} == before
    assert "PLAIT_TEST_COLOUR" not in os.environ


NESTED = """
import os
from plait.pool import Pool

def threads(_):
    return os.environ.get("OMP_NUM_THREADS")

def inner(_):
    with Pool() as pool:  # its share of the CPUs, and its own cap
        return os.environ.get("OMP_NUM_THREADS"), pool._processes, pool.map(threads, range(4))

if __name__ == "__main__":
    with Pool(2) as pool:
        print(pool.map(inner, range(2)))
"""


@pytest.mark.timeout(120)
def test_a_pool_inside_a_worker_caps_its_own_workers_threads(tmp_path):
    # 8 CPUs, 2 outer workers (4 threads each), each running a pool of 4: 1 thread each,
    # not the outer cap read as the user's choice (2 x 4 x 4 = 32 threads on 8 CPUs).
    script = tmp_path / "nested.py"
    script.write_text(NESTED)
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env["PYTHON_CPU_COUNT"] = "8"
    env.pop("PLAIT_THREAD_CAP", None)
    run = run_python(script, env=env, timeout=100, sys_path=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str([("4", 4, ["1"] * 4)] * 2)
