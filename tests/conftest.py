"""Shared fixtures: leak checks for fds, child processes and threads."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest


def open_fds() -> set[int]:
    """The fds this process holds now (from /proc/self/fd)."""
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            os.fstat(fd)
        except OSError:
            continue  # the fd listdir itself used
        fds.add(fd)
    return fds


def child_pids() -> set[int]:
    """Pids whose parent is this process, zombies included (from /proc)."""
    me = os.getpid()
    pids = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after ")".
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[1]) == me:
            pids.add(int(name))
    return pids


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def stop_helper_processes() -> None:
    """Stop the long-lived helper processes this process may have started.

    plait's fork server, and the standard library's fork server and resource tracker
    (started by tests that run the same scenario on ``multiprocessing``, or by peers
    such as Dask that use it), are children of the test process that live on purpose
    until it exits; they are not leaks of the test that happened to start them.
    """
    forkserver = sys.modules.get("plait.process.forkserver")
    if forkserver is not None:
        forkserver.stop_server(timeout=10)
    for name, attr in (
        ("multiprocessing.forkserver", "_forkserver"),
        ("multiprocessing.resource_tracker", "_resource_tracker"),
    ):
        helper = getattr(sys.modules.get(name), attr, None)
        stop = getattr(helper, "_stop", None)
        if stop is not None:
            stop()


@pytest.fixture
def no_leaks():
    """Fail the test if it leaves fds, child processes or threads behind.

    Each is compared with what existed when the test began, so a leak fails the test
    that made it and not every test after it.
    """
    fds = open_fds()
    threads = set(threading.enumerate())
    children = child_pids()
    yield
    stop_helper_processes()
    assert wait_until(
        lambda: child_pids() <= children, 10
    ), f"children left: {child_pids() - children}"
    assert wait_until(
        lambda: set(threading.enumerate()) <= threads, 10
    ), f"threads left: {set(threading.enumerate()) - threads}"
    assert wait_until(lambda: open_fds() <= fds, 5), f"fds left: {open_fds() - fds}"
