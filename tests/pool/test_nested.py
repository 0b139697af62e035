"""Nested pools: a task may start processes and pools, which die with its worker."""

from __future__ import annotations

import os
import signal
import time

import pytest

import plait.process
from plait.pool import Pool, WorkerLostError
from plait.pool.pool import default_processes
from tests.pool import tasks


def _gone(pid: int, seconds: float) -> bool:
    """Whether ``pid`` (not our child) has exited or become a zombie within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
@pytest.mark.timeout(120)
def test_a_task_runs_a_pool_of_its_own(method, no_leaks):
    with Pool(2, context=plait.process.get_context(method)) as pool:
        results = pool.map(tasks.inner_map, [20, 30])
    assert [r[0] for r in results] == [[x * x for x in range(n)] for n in (20, 30)]
    # Each inner pool gets its share of the CPUs, not the whole machine.
    assert all(r[1] == max(1, plait.process.cpu_count() // 2) for r in results)


@pytest.mark.timeout(60)
def test_the_children_of_a_killed_worker_die_with_it(no_leaks, tmp_path):
    path = str(tmp_path / "pids")
    with Pool(1) as pool:
        result = pool.apply_async(tasks.start_child_and_report, (path,))
        deadline = time.monotonic() + 30
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        worker_pid, child_pid = map(int, open(path).read().split())
        os.kill(worker_pid, signal.SIGKILL)
        with pytest.raises(WorkerLostError):
            result.get(30)
        assert _gone(child_pid, 10), f"child {child_pid} of killed worker {worker_pid} lives"


def test_default_processes_follows_the_share(monkeypatch):
    monkeypatch.setenv("PLAIT_CPU_SHARE", "3")
    assert default_processes() == 3
    monkeypatch.setenv("PLAIT_CPU_SHARE", "zero")
    with pytest.raises(ValueError, match="PLAIT_CPU_SHARE"):
        default_processes()
    monkeypatch.delenv("PLAIT_CPU_SHARE")
    assert default_processes() == plait.process.cpu_count()
