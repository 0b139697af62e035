"""The executors beside ``concurrent.futures``: same results; a dead worker breaks nothing."""

from __future__ import annotations

import asyncio
import concurrent.futures
import concurrent.futures.process
import concurrent.futures.thread
import gc
import os
import signal
import threading
import warnings

import pytest

import plait.futures
from plait.futures import WorkerLostError
from plait.pool.errors import TimeoutError
from tests.pool import tasks
from tests.support import run_python, wait_until

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
def test_shutdown_cancel_futures(cls, request, tmp_path):
    check_leaks(request, cls)
    ex = cls(1)
    release = tmp_path / "release"
    first = ex.submit(tasks.return_once_path_exists, str(release), "first")
    assert wait_until(first.running, 10)
    rest = [ex.submit(tasks.square, x) for x in range(20)]
    # the first call runs until the shutdown has cancelled the calls behind it (the last)
    releaser = threading.Thread(target=lambda: (wait_until(rest[-1].cancelled), release.touch()))
    releaser.start()
    ex.shutdown(wait=True, cancel_futures=True)
    releaser.join(30)
    assert first.result() == "first"
    # The standard executor may have queued a few already; the rest never ran.
    cancelled = [f for f in rest if f.cancelled()]
    assert len(cancelled) >= 15
    assert all(f.result() == x * x for x, f in enumerate(rest) if not f.cancelled())


EXIT_PROGRAM = """
import sys
import time

from {module} import {name}


def work(i):
    time.sleep(0.2)  # still queued or running when the main thread ends
    print("task", i, "ran", flush=True)


if __name__ == "__main__":
    executor = {name}(1)
    for i in range(3):
        executor.submit(work, i)
    if sys.argv[1] == "shutdown(wait=False)":
        executor.shutdown(wait=False)
"""


@pytest.mark.parametrize("cls", EXECUTORS)
@pytest.mark.parametrize("ending", ["shutdown(wait=False)", "no shutdown"])
@pytest.mark.timeout(120)
def test_the_work_submitted_is_done_at_interpreter_exit(cls, ending, tmp_path):
    program = tmp_path / "program.py"
    program.write_text(EXIT_PROGRAM.format(module=cls.__module__, name=cls.__name__))
    run = run_python(program, ending, timeout=60, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [f"task {i} ran" for i in range(3)]


@pytest.mark.parametrize("cls", EXECUTORS)
@pytest.mark.timeout(60)
def test_closing_a_map_early_cancels_the_tasks_not_started(cls, request, tmp_path):
    check_leaks(request, cls)
    log, release, open_path = tmp_path / "log", tmp_path / "release", tmp_path / "open"
    open_path.touch()
    paths = [str(open_path)] + [str(release)] * 11  # the first task returns, the rest wait
    with cls(1) as ex:
        it = ex.map(tasks.log_once_path_exists, [str(log)] * 12, paths, range(12), chunksize=1)
        assert next(it) == 0
        it.close()
        release.touch()
    ran = [int(line) for line in log.read_text().split()]
    # What ran: the first, the one running, and the few sent ahead of it to the worker
    # (the standard process executor queues two ahead); the rest was cancelled.
    assert ran == list(range(len(ran)))
    assert 1 <= len(ran) <= 4


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


def test_the_face_has_the_whole_standard_namespace():
    standard = concurrent.futures
    names = [*standard.__all__, "InvalidStateError"]
    executors = {"ProcessPoolExecutor", "ThreadPoolExecutor"}
    for name in names:
        if name not in executors:  # the standard objects: futures, helpers, errors
            assert getattr(plait.futures, name) is getattr(standard, name), name
    assert plait.futures.process.BrokenProcessPool is standard.process.BrokenProcessPool
    assert plait.futures.thread.BrokenThreadPool is standard.thread.BrokenThreadPool
    assert plait.futures.process.ProcessPoolExecutor is plait.futures.ProcessPoolExecutor
    assert plait.futures.thread.ThreadPoolExecutor is plait.futures.ThreadPoolExecutor
    with pytest.raises(AttributeError, match="plait's executor has none"):
        plait.futures.process.EXTRA_QUEUED_CALLS  # noqa: B018 - the lookup is the test
    # plait's own errors are caught by the standard names
    assert issubclass(TimeoutError, plait.futures.TimeoutError)
    assert issubclass(WorkerLostError, plait.futures.process.BrokenProcessPool)


@pytest.mark.parametrize(
    "face", [pytest.param(concurrent.futures, id="std"), pytest.param(plait.futures, id="plait")]
)
@pytest.mark.timeout(60)
def test_executors_are_the_standard_classes_for_asyncio(face, request):
    if face is plait.futures:
        request.getfixturevalue("no_leaks")

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_default_executor(face.ThreadPoolExecutor(2))
        in_thread = await loop.run_in_executor(None, tasks.add, 2, 3)
        with face.ProcessPoolExecutor(2) as ex:
            in_process = await loop.run_in_executor(ex, tasks.square, 7)
        return in_thread, in_process

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert asyncio.run(main()) == (5, 49)
    for cls in (face.ThreadPoolExecutor, face.ProcessPoolExecutor):
        assert issubclass(cls, getattr(concurrent.futures, cls.__name__))
        assert issubclass(cls, concurrent.futures.Executor)


def test_the_standard_executors_internals_say_they_are_not_plait_s():
    with plait.futures.ThreadPoolExecutor(1) as ex:
        assert ex._max_workers == 1
        with pytest.raises(NotImplementedError, match="_adjust_thread_count is an internal"):
            ex._adjust_thread_count()
    with plait.futures.ProcessPoolExecutor(1) as ex:
        assert ex._max_workers == 1
        with pytest.raises(NotImplementedError, match="_spawn_process is an internal"):
            ex._spawn_process()


@pytest.mark.parametrize(
    "cls, broken",
    [
        pytest.param(concurrent.futures.ThreadPoolExecutor, "thread", id="std-thread"),
        pytest.param(plait.futures.ThreadPoolExecutor, "thread", id="plait-thread"),
        pytest.param(concurrent.futures.ProcessPoolExecutor, "process", id="std-process"),
        pytest.param(plait.futures.ProcessPoolExecutor, "process", id="plait-process"),
    ],
)
@pytest.mark.timeout(60)
def test_a_failing_initializer_raises_the_standard_broken_pool_error(cls, broken, request):
    check_leaks(request, cls)
    error = {
        "thread": concurrent.futures.thread.BrokenThreadPool,
        "process": concurrent.futures.process.BrokenProcessPool,
    }[broken]
    ex = cls(1, initializer=tasks.broken_initializer)
    try:
        with pytest.raises(error):
            ex.submit(tasks.square, 3).result(30)
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize(
    "cls",
    [
        pytest.param(concurrent.futures.ProcessPoolExecutor, id="std-process"),
        pytest.param(plait.futures.ProcessPoolExecutor, id="plait-process"),
    ],
)
@pytest.mark.timeout(60)
def test_a_killed_worker_raises_broken_process_pool(cls, request, tmp_path):
    check_leaks(request, cls)
    path = str(tmp_path / "pid")
    with cls(1) as ex:
        victim = ex.submit(tasks.report_pid_and_sleep, path, 30)
        assert wait_until(lambda: os.path.exists(path) and os.path.getsize(path) > 0)
        with open(path) as f:
            os.kill(int(f.read()), signal.SIGKILL)
        with pytest.raises(concurrent.futures.process.BrokenProcessPool):
            victim.result(30)


@pytest.mark.parametrize("cls", EXECUTORS)
@pytest.mark.timeout(60)
def test_an_executor_dropped_without_shutdown_says_nothing(cls, request):
    check_leaks(request, cls)
    ex = cls(1)
    assert ex.submit(tasks.square, 5).result(30) == 25
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del ex
        gc.collect()
    assert not caught


@pytest.mark.parametrize(
    "ours, standard, internal",
    [
        (
            plait.futures.ProcessPoolExecutor,
            concurrent.futures.ProcessPoolExecutor,
            "_adjust_process_count",
        ),
        (
            plait.futures.ThreadPoolExecutor,
            concurrent.futures.ThreadPoolExecutor,
            "_adjust_thread_count",
        ),
    ],
)
def test_no_method_of_the_standard_executor_runs_on_plaits(ours, standard, internal):
    """Identity only: every method the standard class has (on this Python, also ones a
    newer version adds) is plait's own, or raises NotImplementedError naming itself."""
    for name in dir(standard):
        attribute = getattr(ours, name)
        if callable(attribute) and not (name.startswith("__") and name.endswith("__")):
            assert attribute.__module__.startswith("plait"), name
    with ours(1) as executor:
        with pytest.raises(NotImplementedError, match=f"{internal} is an internal"):
            getattr(executor, internal)()
