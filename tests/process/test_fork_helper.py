"""No fork from a process that runs threads: the fork helper, and the pool that uses it.

Each scenario reads what the kernel shows: a child's parent pid, and how many threads
that parent runs (``/proc/<pid>/stat``). A helper is a single-threaded copy of this
process (a fork copies only the calling thread); a child it forked has the helper as
parent. The scenarios that need a process with one thread (the test process may run
others: numpy's BLAS threads, a library's) run as small programs of their own.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import threading

import pytest

import plait.ipc
import plait.process
from plait.process.fork import thread_count
from plait.process.forkserver import ForkHelper
from tests.process import targets
from tests.process.conftest import FORKS_FROM_THREADS
from tests.support import run_python

# A helper made here while the test process runs threads is forked with Python's warning.
pytestmark = [pytest.mark.usefixtures("no_leaks"), pytest.mark.timeout(60), FORKS_FROM_THREADS]

FORK = plait.process.get_context("fork")
# Set after the helper of a test is made: its children must not see it.
LATE = {"value": "before the helper"}


def threads_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return int(stat[stat.rindex(b")") + 2 :].split()[17])


def report(conn) -> None:
    """Send back (my parent's pid, its thread count, LATE's value, my SIGINT handler)."""
    parent = os.getppid()
    handler = signal.getsignal(signal.SIGINT)
    conn.send((parent, threads_of(parent), LATE["value"], getattr(handler, "__name__", handler)))
    conn.close()


class Running:
    """A thread that runs until the block ends: this process runs two threads."""

    def __enter__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._stop.wait, args=(30,))
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)


def started_through(helper: ForkHelper, target, *args):
    """Start ``target(conn, *args)`` with ``helper.start_process``; return what it sent."""
    here, there = plait.ipc.Pipe()
    p = FORK.Process(target=target, args=(there, *args))
    helper.start_process(p)
    there.close()
    try:
        assert here.poll(30), "the child sent nothing"
        return p, here.recv()
    finally:
        p.join(30)
        here.close()


def run_program(code: str) -> object:
    """Run ``code`` (a program that prints one JSON value) in a fresh interpreter."""
    run = run_python(
        "-c",
        textwrap.dedent(code),
        timeout=50,
        sys_path=True,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.fixture
def helper():
    h = ForkHelper()
    yield h
    assert h.close(10), "the fork helper did not exit when its owner closed it"


def test_a_start_while_threads_run_is_forked_by_the_helper(helper):
    LATE["value"] = "after the helper"
    try:
        with Running():
            assert thread_count() >= 2
            p, (parent, threads, late, _) = started_through(helper, report)
    finally:
        LATE["value"] = "before the helper"
    assert parent == helper.pid != os.getpid()
    assert threads == 1
    assert late == "before the helper"  # the helper is a copy made before the change
    assert p.exitcode == 0


def test_a_start_with_no_other_thread_forks_directly():
    parents = run_program(
        """
        import json, os
        import plait.process
        from plait.process.forkserver import ForkHelper
        from tests.process.test_fork_helper import report

        helper = ForkHelper()
        here, there = plait.ipc.Pipe()
        p = plait.process.get_context("fork").Process(target=report, args=(there,))
        helper.start_process(p)
        parent = here.recv()[0]
        p.join(30)
        print(json.dumps([parent, os.getpid(), helper.pid, p.exitcode, helper.close(10)]))
        """
    )
    parent, me, helper_pid, exitcode, closed = parents
    assert parent == me != helper_pid
    assert exitcode == 0 and closed


def test_the_helper_reports_exit_codes_and_signals(helper):
    with Running():
        for target, args, code in [
            (targets.exit_with, (7,), 7),
            (targets.signal_self, (signal.SIGTERM,), -signal.SIGTERM),
        ]:
            p = FORK.Process(target=target, args=args)
            helper.start_process(p)
            p.join(30)
            assert p.exitcode == code
            p.close()
        p = FORK.Process(target=targets.sleep, args=(30,))
        helper.start_process(p)
        p.kill()
        p.join(30)
        assert p.exitcode == -signal.SIGKILL


def test_ctrl_c_does_not_stop_the_helper_and_its_children_get_the_owner_s_handler(helper):
    os.kill(helper.pid, signal.SIGINT)  # as a terminal's Ctrl-C reaches the process group
    with Running():
        _, (parent, _, _, handler) = started_through(helper, report)
    assert parent == helper.pid
    assert handler == "default_int_handler"


# Set by the next test: the helper it forks gets a Ctrl-C in its first step, before it
# can ignore SIGINT (it asks for the owner's handler first).
CTRL_C_AT_FORK = {"on": False}


def _ctrl_c_in_the_child() -> None:
    if not CTRL_C_AT_FORK["on"]:
        return
    CTRL_C_AT_FORK["on"] = False  # this copy only: the helper's own children stay quiet
    getsignal = signal.getsignal

    def getsignal_after_a_ctrl_c(signum):
        signal.getsignal = getsignal
        os.kill(os.getpid(), signal.SIGINT)
        return getsignal(signum)

    signal.getsignal = getsignal_after_a_ctrl_c


os.register_at_fork(after_in_child=_ctrl_c_in_the_child)


def test_a_ctrl_c_the_moment_the_helper_is_forked_does_not_stop_it():
    CTRL_C_AT_FORK["on"] = True
    try:
        helper = ForkHelper()
    finally:
        CTRL_C_AT_FORK["on"] = False
    try:
        with Running():
            _, (parent, _, _, handler) = started_through(helper, report)
        assert parent == helper.pid
        assert handler == "default_int_handler"
    finally:
        assert helper.close(10), "the fork helper did not exit when its owner closed it"


def test_a_process_forked_from_the_owner_does_not_keep_the_helper_alive(helper):
    p = FORK.Process(target=targets.sleep, args=(30,))
    p.start()  # holds a copy of every fd the owner had, but the helper's socket
    try:
        assert helper.close(10), "the forked child kept the helper's control socket"
    finally:
        p.kill()
        p.join(30)


def test_a_helper_killed_from_outside_leaves_starts_to_a_direct_fork(helper):
    os.kill(helper.pid, signal.SIGKILL)
    with Running():
        p, (parent, _, _, _) = started_through(helper, report)
    assert parent == os.getpid()
    assert p.exitcode == 0


POOL_PROGRAM = """
import json, os, sys, warnings
warnings.simplefilter("always")
import {module} as multiprocessing

def worker_parent(_):
    parent = os.getppid()
    with open(f"/proc/{{parent}}/stat", "rb") as f:
        stat = f.read()
    return parent, int(stat[stat.rindex(b")") + 2 :].split()[17])

if __name__ == "__main__":
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with multiprocessing.get_context("fork").Pool(2, maxtasksperchild=1) as pool:
            parents = pool.map(worker_parent, range(8), chunksize=1)
            pool.close()
            pool.join()
    warned = [str(w.message) for w in caught if "multi-threaded" in str(w.message)]
    print(json.dumps([os.getpid(), parents, warned]))
"""


@pytest.mark.parametrize("module", ["plait.multiprocessing", "multiprocessing"])
def test_a_pool_on_fork_never_forks_a_worker_while_its_scheduler_thread_runs(module):
    me, parents, warned = run_program(POOL_PROGRAM.format(module=module))
    # The first two workers are forked before the pool's threads start; each of the
    # six that replace them, while they run.
    replacements = [(parent, threads) for parent, threads in parents if parent != me]
    if module == "multiprocessing":  # the peer forks them from its own threaded process
        assert len(replacements) == 0
        assert warned or sys.version_info < (3, 12)
        return
    assert len(replacements) >= 6
    assert all(threads == 1 for _, threads in replacements)
    assert warned == []
