"""The two implementations every compatibility scenario runs on, and the leak check."""

from __future__ import annotations

import gc
import multiprocessing
import multiprocessing.resource_tracker
import multiprocessing.sharedctypes
import os
import threading
import types

import pytest

import plait.ipc.queues as queues
import plait.ipc.sharedctypes as sharedctypes
import plait.ipc.synchronize as sync
import plait.process
from tests.conftest import child_pids, open_fds, stop_helper_processes, wait_until

_STD = multiprocessing.get_context("fork")
_PLAIT = plait.process.get_context("fork")

STANDARD = types.SimpleNamespace(
    name="multiprocessing",
    Process=_STD.Process,
    Lock=_STD.Lock,
    RLock=_STD.RLock,
    Semaphore=_STD.Semaphore,
    BoundedSemaphore=_STD.BoundedSemaphore,
    Condition=_STD.Condition,
    Event=_STD.Event,
    Barrier=_STD.Barrier,
    Queue=_STD.Queue,
    JoinableQueue=_STD.JoinableQueue,
    SimpleQueue=_STD.SimpleQueue,
    sharedctypes=multiprocessing.sharedctypes,
)
PLAIT = types.SimpleNamespace(
    name="plait",
    Process=_PLAIT.Process,
    Lock=sync.Lock,
    RLock=sync.RLock,
    Semaphore=sync.Semaphore,
    BoundedSemaphore=sync.BoundedSemaphore,
    Condition=sync.Condition,
    Event=sync.Event,
    Barrier=sync.Barrier,
    Queue=queues.Queue,
    JoinableQueue=queues.JoinableQueue,
    SimpleQueue=queues.SimpleQueue,
    sharedctypes=sharedctypes,
)


@pytest.fixture(params=[STANDARD, PLAIT], ids=lambda api: api.name)
def api(request):
    """``multiprocessing`` (fork context) or plait: the same scenario runs on both."""
    return request.param


def shm_names() -> set[str]:
    """The names in /dev/shm now, but POSIX named semaphores (``sem.*``: the standard
    library's ``sem.mp-*``, loky's ``sem.loky-*``): other programs on this machine make
    and unlink those all the time, plait never."""
    if not os.path.isdir("/dev/shm"):
        return set()
    return {n for n in os.listdir("/dev/shm") if not n.startswith("sem.")}


@pytest.fixture
def no_shm_leaks(request):
    """No fd, child process, thread or /dev/shm name left behind by the test.

    The fd check is skipped for the standard library's variant of a scenario: its shared
    heap (behind ``Barrier`` and ``Value``) keeps an arena fd for the life of the process.
    """
    standard = (
        any(
            name in request.fixturenames
            and getattr(request.getfixturevalue(name), "__name__", "").startswith("multiprocessing")
            for name in ("shm",)
        )
        or ("api" in request.fixturenames and request.getfixturevalue("api") is STANDARD)
        or ("mods" in request.fixturenames and request.getfixturevalue("mods").api is STANDARD)
    )
    fds, threads, names = open_fds(), set(threading.enumerate()), shm_names()
    before = child_pids()
    yield
    stop_helper_processes()

    def children():
        return child_pids() - before

    assert wait_until(lambda: not children(), 10), f"children left: {children()}"
    assert wait_until(
        lambda: set(threading.enumerate()) <= threads, 10
    ), f"threads left: {set(threading.enumerate()) - threads}"
    assert wait_until(lambda: shm_names() <= names, 5), f"left in /dev/shm: {shm_names() - names}"
    if not standard:
        gc.collect()
        assert wait_until(lambda: open_fds() <= fds, 5), f"fds left: {open_fds() - fds}"


def run(api, target, *args, timeout: float = 20):
    """Start ``target(*args)`` in a child of ``api``; return the process, started."""
    process = api.Process(target=target, args=args)
    process.start()
    return process


def finish(process, timeout: float = 20) -> int:
    """Join ``process`` (kill it past ``timeout``); return its exit code."""
    process.join(timeout)
    if process.exitcode is None:
        process.kill()
        process.join(10)
    return process.exitcode
