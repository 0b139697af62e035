"""Coroutines meet processes: run_in_process on the kernel's plait pool."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import socket
import threading
import time

import pytest

from plait import coro
from plait.pool import RemoteTraceback, WorkerLostError
from tests.support import wait_until

pytestmark = [pytest.mark.usefixtures("no_leaks"), pytest.mark.timeout(60)]


def square(x):
    return x * x


def fail(message):
    raise ValueError(message)


def report_pid_then_sleep(path, seconds):
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)


def alive(pid):
    return os.path.exists(f"/proc/{pid}")


async def started_pid(path, timeout=10.0):
    """The pid the worker wrote to ``path``, polled without blocking the kernel."""
    deadline = coro.clock() + timeout
    while not (path.exists() and path.read_text()):
        assert coro.clock() < deadline, "the call never started in a worker"
        await coro.sleep(0.01)
    return int(path.read_text())


def wait_for_path(path, timeout):
    """Wait until the file ``path`` has content; whether it had within ``timeout`` seconds."""
    return bool(wait_until(lambda: os.path.exists(path) and os.path.getsize(path), timeout))


async def until_gone(pid, timeout=10.0):
    deadline = coro.clock() + timeout
    while alive(pid):
        assert coro.clock() < deadline, f"worker {pid} still runs the cancelled call"
        await coro.sleep(0.01)


def test_returns_the_result_from_another_process_without_blocking_the_kernel(tmp_path):
    ticked = tmp_path / "ticked"

    async def ticker():
        for _ in range(5):
            await coro.sleep(0.005)
        ticked.write_text("ticked")

    async def main():
        worker = await coro.run_in_process(os.getpid)
        await coro.spawn(ticker, daemon=True)
        # the worker waits for what only the kernel, scheduling on meanwhile, can do
        saw_ticks = await coro.run_in_process(wait_for_path, str(ticked), 30)
        value = await coro.run_in_process(square, 12)
        return worker, saw_ticks, value

    worker, saw_ticks, value = coro.run(main)
    assert worker != os.getpid()
    assert (saw_ticks, value) == (True, 144)


def test_raises_the_remote_exception_with_its_traceback():
    async def main():
        with pytest.raises(ValueError, match="bad input 7") as info:
            await coro.run_in_process(fail, "bad input 7")
        return info.value

    exc = coro.run(main)
    assert isinstance(exc.__cause__, RemoteTraceback)
    assert "in fail" in str(exc.__cause__)


def test_lambdas_closures_and_keyword_arguments_travel():
    offset = 100

    async def main():
        a = await coro.run_in_process(lambda x: x + offset, 5)
        b = await coro.run_in_process(sorted, [3, 1, 2], reverse=True)
        return a, b

    assert coro.run(main) == (105, [3, 2, 1])


def test_many_concurrent_calls_share_the_bounded_pool():
    async def main():
        async with coro.TaskGroup() as g:
            squares = [await g.spawn(coro.run_in_process, square, i) for i in range(200)]
            pids = [await g.spawn(coro.run_in_process, os.getpid) for _ in range(50)]
        return [t.result for t in squares], {t.result for t in pids}

    results, workers = coro.run(main)
    assert results == [i * i for i in range(200)]
    assert 1 <= len(workers) <= os.cpu_count()  # bounded: cpu_count() workers at most


def test_timeout_after_kills_the_worker_running_the_call(tmp_path):
    marker = tmp_path / "pid"
    clock = coro.MockClock()  # stopped: the timeout expires once the call runs in a worker

    async def call_under_a_timeout():
        async with coro.timeout_after(1.0):
            await coro.run_in_process(report_pid_then_sleep, str(marker), 60)

    async def main():
        task = await coro.spawn(call_under_a_timeout)
        started = await coro.run_in_thread(wait_for_path, str(marker), 30)
        assert started, "the call never started in a worker"
        pid = int(marker.read_text())
        clock.jump(1.0)
        with pytest.raises(coro.TaskTimeout):
            await task.join()
        clock.rate = 1  # real time again, for the polls that follow
        await until_gone(pid)
        after = await coro.run_in_process(square, 9)  # the pool replaced the worker
        return pid, after

    pid, after = coro.run(main, clock=clock)
    assert after == 81
    assert not alive(pid)


def test_cancelling_the_awaiting_task_kills_the_worker(tmp_path):
    marker = tmp_path / "pid"

    async def main():
        task = await coro.spawn(coro.run_in_process, report_pid_then_sleep, str(marker), 60)
        pid = await started_pid(marker)
        await task.cancel()
        await until_gone(pid)
        return task.cancelled, pid, await coro.run_in_process(os.getpid)

    cancelled, pid, replacement = coro.run(main)
    assert cancelled
    assert replacement != pid


def test_a_worker_that_dies_fails_only_its_call():
    async def main():
        with pytest.raises(WorkerLostError):
            await coro.run_in_process(os._exit, 3)
        return await coro.run_in_process(square, 3)

    assert coro.run(main) == 9


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return int(stat[stat.rindex(b")") + 2 :].split()[1])


def test_no_worker_outlives_run():
    async def main():
        workers = {await coro.run_in_process(os.getpid) for _ in range(4)}
        # Children of this process, or of the pool's fork helper (one of its children).
        me = os.getpid()
        assert all(me in (parent_of(w), parent_of(parent_of(w))) for w in workers)
        return workers

    workers = coro.run(main)
    # terminated and reaped when run() returned: not even a zombie is left
    assert not [w for w in workers if os.path.exists(f"/proc/{w}")]


def test_bad_input_is_named():
    async def main():
        with pytest.raises(TypeError):
            await coro.run_in_process(42)
        with pytest.raises(pickle.PicklingError, match="_thread.lock"):
            await coro.run_in_process(square, threading.Lock())
        return await coro.run_in_process(square, 2)

    assert coro.run(main) == 4


def test_awaited_outside_the_kernel_raises_no_kernel_error():
    with pytest.raises(coro.NoKernelError):
        asyncio.run(coro.run_in_process(square, 2))


def test_a_socket_the_parent_closes_is_closed_for_its_peer_though_a_worker_started_meanwhile():
    async def main():
        mine, peer = socket.socketpair()
        with peer:
            await coro.run_in_process(square, 2)  # the kernel's pool starts while both are open
            mine.close()
            peer.settimeout(10)
            return await coro.run_in_thread(peer.recv, 1)

    assert coro.run(main) == b""  # EOF: no worker holds a copy of the closed end


def signal_wakeup_fd():
    return signal.set_wakeup_fd(-1)


def test_a_worker_does_not_write_its_signals_to_the_kernels_wakeup_pipe():
    async def main():
        return await coro.run_in_process(signal_wakeup_fd)

    assert coro.run(main) == -1
