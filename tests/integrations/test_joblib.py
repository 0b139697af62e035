"""joblib's ``Parallel(backend="plait")`` runs on a plait Pool: the real joblib, the same
results as its default backend, its batching, timeouts and dead workers."""

from __future__ import annotations

import os
import signal
import time

import pytest

joblib = pytest.importorskip("joblib")

from joblib import Parallel, delayed  # noqa: E402

from plait.integrations import joblib as plait_joblib  # noqa: E402
from plait.pool import TimeoutError as PoolTimeoutError  # noqa: E402
from plait.pool import WorkerLostError  # noqa: E402
from tests.support import run_python  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def fresh_pool(no_leaks):
    """Each test starts without a kept pool and leaves none behind (the kept pool is
    terminated before the leak check looks)."""
    plait_joblib.shutdown()
    yield
    plait_joblib.shutdown()


def where(x):
    import plait.process

    return x * x, os.getpid(), plait.process.current_process().name


def fail_on(x, bad):
    if x == bad:
        raise ValueError(f"bad item {x}")
    return x


def sleep_then(seconds):
    time.sleep(seconds)
    return seconds


def die(x):
    if x == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


PROGRAM = """
import sys
import plait.integrations.joblib
from joblib import Parallel, delayed

def work(x):
    if x == 13:
        raise KeyError(x)
    return {"x": x, "squares": [i * i for i in range(x % 7)]}

if __name__ == "__main__":
    backend = sys.argv[1]
    print(Parallel(n_jobs=2, backend=backend)(delayed(work)(i) for i in range(13)))
    try:
        Parallel(n_jobs=2, backend=backend)(delayed(work)(i) for i in range(20))
    except KeyError as e:
        print("KeyError", e)
"""


def test_a_program_prints_the_same_on_plait_as_on_joblibs_default_backend(tmp_path):
    # loky keeps its workers until the interpreter exits: each backend runs in its own.
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    outputs = {}
    for backend in ("plait", "loky"):
        run = run_python(str(script), backend, timeout=100)
        assert run.returncode == 0, run.stderr
        outputs[backend] = run.stdout
    assert outputs["plait"] == outputs["loky"]
    assert "KeyError 13" in outputs["plait"]


INTERACTIVE = """
import plait.integrations.joblib
from joblib import Parallel, delayed

def square(x):
    return x * x

print(Parallel(n_jobs=2, backend="plait")(delayed(square)(i) for i in range(4)))

# Defined after the kept pool forked its workers, in a __main__ no child can import:
class Point:
    def __init__(self, x):
        self.x = x

def nested(n):
    return sum(Parallel(n_jobs=2, backend="plait")(delayed(square)(i) for i in range(n)))

print([p.x for p in Parallel(n_jobs=2, backend="plait")(delayed(Point)(i) for i in range(3))])
print(Parallel(n_jobs=2, backend="plait")(delayed(nested)(n) for n in range(5)))
"""


@pytest.mark.timeout(150)
def test_functions_and_classes_defined_later_in_main_and_nested_calls_run_as_with_loky():
    # As in a notebook: __main__ grows after the workers started. A worker's nested
    # Parallel gets a pool of its own, not the parent's copy of the kept one.
    run = run_python("-c", INTERACTIVE, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["[0, 1, 4, 9]", "[0, 1, 2]", "[0, 0, 1, 5, 14]"]


def test_same_results_as_without_plait_and_the_work_runs_in_plait_workers():
    tasks = [delayed(where)(i) for i in range(200)]
    ours = Parallel(n_jobs=2, backend="plait")(tasks)
    theirs = Parallel(n_jobs=1)(tasks)
    assert [value for value, _, _ in ours] == [value for value, _, _ in theirs]
    pool = plait_joblib.current_pool()
    assert pool is not None
    pids = {pid for _, pid, _ in ours}
    assert os.getpid() not in pids
    assert pids <= set(pool.stats().workers) | set(pool.stats().busy_seconds)
    # plait started these processes: it knows them by the names it gave them.
    assert {name for _, _, name in ours} != {"MainProcess"}


def test_lambdas_and_closures_run_as_with_loky():
    offset = 10
    results = Parallel(n_jobs=2, backend="plait")(
        delayed(lambda x: x + offset)(i) for i in range(20)
    )
    assert results == [x + 10 for x in range(20)]


def test_auto_batching_groups_tiny_tasks_into_fewer_pool_tasks():
    count = 20_000
    results = Parallel(n_jobs=2, backend="plait")(delayed(abs)(-i) for i in range(count))
    assert results == list(range(count))
    done = plait_joblib.current_pool().stats().tasks_done
    assert done < count / 10, f"{done} pool tasks for {count} calls: no batching"


def test_the_pool_is_kept_between_calls_as_loky_keeps_its_executor():
    Parallel(n_jobs=2, backend="plait")(delayed(abs)(i) for i in range(10))
    first = plait_joblib.current_pool()
    Parallel(n_jobs=2, backend="plait")(delayed(abs)(i) for i in range(10))
    assert plait_joblib.current_pool() is first
    with joblib.parallel_config(backend="plait", n_jobs=2):
        assert Parallel()(delayed(abs)(-i) for i in range(5)) == list(range(5))
    assert plait_joblib.current_pool() is first


def test_a_task_error_reaches_the_caller():
    with pytest.raises(ValueError, match="bad item 7"):
        Parallel(n_jobs=2, backend="plait")(delayed(fail_on)(i, 7) for i in range(20))
    # ... and the backend serves the next call.
    assert Parallel(n_jobs=2, backend="plait")(delayed(abs)(i) for i in range(5)) == [
        0,
        1,
        2,
        3,
        4,
    ]


def test_a_timeout_stops_the_task_itself_and_raises_what_joblib_raises():
    with pytest.raises(TimeoutError) as caught:
        Parallel(n_jobs=2, backend="plait", timeout=1)(
            delayed(sleep_then)(s) for s in (0.01, 30, 0.01)
        )
    # joblib's own TimeoutError is multiprocessing's; plait's pool error is both.
    import multiprocessing

    assert isinstance(caught.value, multiprocessing.TimeoutError)
    assert isinstance(caught.value, PoolTimeoutError)
    assert Parallel(n_jobs=2, backend="plait")(delayed(abs)(i) for i in range(3)) == [0, 1, 2]


def test_a_worker_killed_by_sigkill_fails_its_batch_with_worker_lost_and_the_next_call_works():
    with pytest.raises(WorkerLostError) as caught:
        Parallel(n_jobs=2, backend="plait", batch_size=1)(delayed(die)(i) for i in range(6))
    assert caught.value.signal == signal.SIGKILL
    assert Parallel(n_jobs=2, backend="plait")(delayed(abs)(i) for i in range(3)) == [0, 1, 2]


def test_unknown_arguments_are_refused_and_n_jobs_one_runs_in_process():
    with pytest.raises(TypeError, match="frobnicate"):
        with joblib.parallel_config(backend="plait", n_jobs=2, frobnicate=1):
            Parallel()(delayed(abs)(i) for i in range(3))
    results = Parallel(n_jobs=1, backend="plait")(delayed(where)(i) for i in range(3))
    assert {pid for _, pid, _ in results} == {os.getpid()}


def slow(x):
    time.sleep(0.05)
    return x


@pytest.mark.parametrize("other", ["aborts", "needs three workers"])
def test_a_concurrent_call_that_aborts_or_needs_another_pool_leaves_this_call_running(other):
    import threading

    out = {}
    started = threading.Event()

    def long_call():
        tasks = (delayed(slow)(i) for i in range(60) if i or not started.set())
        try:
            out["long"] = len(Parallel(n_jobs=2, backend="plait")(tasks))
        except Exception as e:  # noqa: BLE001 - the result of the test
            out["long"] = repr(e)

    def other_call():
        started.wait(30)
        try:
            if other == "aborts":
                Parallel(n_jobs=2, backend="plait", batch_size=1)(
                    delayed(fail_on)(i, 5) for i in range(10)
                )
            else:
                out["other"] = sum(
                    Parallel(n_jobs=3, backend="plait")(delayed(abs)(i) for i in range(4))
                )
        except ValueError as e:
            out["other"] = str(e)

    threads = [threading.Thread(target=long_call), threading.Thread(target=other_call)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert out == {"long": 60, "other": "bad item 5" if other == "aborts" else 6}


def parallel_in_a_child(_):
    return sum(Parallel(n_jobs=2, backend="plait")(delayed(abs)(-i) for i in range(10)))


def test_a_plait_child_that_used_the_backend_ends_cleanly_without_calling_shutdown():
    # A plait child leaves by os._exit: its kept pool must end with its finalizers.
    import plait.process

    for _ in range(3):
        child = plait.process.Process(target=parallel_in_a_child, args=(0,))
        child.start()
        child.join(60)
        assert child.exitcode == 0


def thread_variables(_):
    return os.environ.get("OMP_NUM_THREADS"), os.environ.get("OPENBLAS_NUM_THREADS")


def test_inner_max_num_threads_sets_each_workers_blas_threads_as_with_loky():
    with joblib.parallel_config(backend="plait", n_jobs=2, inner_max_num_threads=3):
        seen = set(Parallel()(delayed(thread_variables)(i) for i in range(4)))
    assert seen == {("3", "3")}
