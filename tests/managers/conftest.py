"""Fixtures of the manager tests: the two module families (standard and plait)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.managers
import os
import threading

import pytest

import plait.multiprocessing
import plait.multiprocessing.managers
from tests.conftest import child_pids, open_fds, stop_helper_processes, wait_until


class Family:
    """A ``multiprocessing``-like module and its ``managers`` module, tested alike."""

    def __init__(self, name, mp, managers):
        self.name = name
        self.mp = mp
        self.managers = managers

    def manager(self, method: str = "fork"):
        m = self.managers.SyncManager(ctx=self.mp.get_context(method))
        m.start()
        return m

    def __repr__(self) -> str:
        return self.name


STANDARD = Family("multiprocessing", multiprocessing, multiprocessing.managers)
PLAIT = Family("plait", plait.multiprocessing, plait.multiprocessing.managers)


@pytest.fixture(autouse=True)
def _stop_helpers_after_each_test():
    """The fork servers and the standard resource tracker that a test started must not
    outlive it: later tests (here and in other directories) count this process's children."""
    yield
    stop_helper_processes()


@pytest.fixture(params=[STANDARD, PLAIT], ids=repr)
def family(request):
    return request.param


def _check_leaks():
    fds, children, threads = open_fds(), child_pids(), set(threading.enumerate())
    yield
    stop_helper_processes()
    assert wait_until(lambda: child_pids() <= children, 10), f"children left: {child_pids()}"
    assert wait_until(lambda: set(threading.enumerate()) <= threads, 10)
    assert wait_until(lambda: open_fds() <= fds, 5), f"fds left: {_describe(open_fds() - fds)}"


def _describe(fds) -> dict:
    out = {}
    for fd in fds:
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            out[fd] = "?"
    return out


@pytest.fixture
def leak_free():
    """``no_leaks``, except that children alive before the test are not counted: the
    standard library's resource tracker, started by an earlier test, stays forever."""
    yield from _check_leaks()


@pytest.fixture
def plait_no_leaks(family):
    """``leak_free`` for the plait family (the standard library's may keep children)."""
    if family is PLAIT:
        yield from _check_leaks()
    else:
        yield
