"""Targets of the process tests: module level, importable by spawn and forkserver children.

This module imports nothing heavy (no pytest), so a spawned child that unpickles a
target here pays only for plait itself.
"""

from __future__ import annotations

import os
import sys
import time

import plait.process
from plait.process.context import ForkProcess, ForkServerProcess, SpawnProcess


def exit_with(code: int) -> None:
    sys.exit(code)


def raise_error() -> None:
    raise RuntimeError("boom")


def hard_exit(code: int) -> None:
    os._exit(code)


def signal_self(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(10)


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def nothing() -> None:
    pass


def identity() -> dict:
    me = plait.process.current_process()
    parent = plait.process.parent_process()
    return {
        "name": me.name,
        "pid": me.pid,
        "os_pid": os.getpid(),
        "daemon": me.daemon,
        "parent_pid": parent.pid,
        "parent_name": parent.name,
        "parent_alive": parent.is_alive(),
        "stdin": sys.stdin.read(),
        "start_method": plait.process.get_start_method(),
    }


def parent_pid() -> int:
    return plait.process.parent_process().pid


class Squarer(plait.process.Process):
    """A subclass that overrides ``run``; reports through the exit code."""

    def __init__(self, x: int) -> None:
        super().__init__()
        self.x = x

    def run(self) -> None:
        sys.exit(self.x * self.x)


class ForkSquarer(Squarer, ForkProcess):
    pass


class SpawnSquarer(Squarer, SpawnProcess):
    pass


class ForkServerSquarer(Squarer, ForkServerProcess):
    pass


SQUARERS = {"fork": ForkSquarer, "spawn": SpawnSquarer, "forkserver": ForkServerSquarer}


# -- for the compatibility tests: the same target under multiprocessing and plait -------


def module(name: str):
    """``multiprocessing`` or ``plait.process``, by name (module objects do not pickle)."""
    import importlib

    return importlib.import_module(name)


def join_self(modname: str) -> None:
    """Exit 5 if joining oneself raises AssertionError('can only join a child process')."""
    try:
        module(modname).current_process().join()
    except AssertionError as exc:
        sys.exit(5 if "can only join a child process" in str(exc) else 6)
    sys.exit(7)


def start_grandchild(modname: str, method: str) -> None:
    """Exit 5 if a daemon may not start a child (AssertionError), else 6/7."""
    try:
        module(modname).get_context(method).Process(target=nothing).start()
    except AssertionError as exc:
        sys.exit(5 if "daemonic processes are not allowed" in str(exc) else 6)
    sys.exit(7)


def describe(modname: str, path: str) -> None:
    """Write what a child sees of itself and its parent to ``path`` (as repr of a dict)."""
    mod = module(modname)
    me, parent = mod.current_process(), mod.parent_process()
    facts = {
        "name": me.name,
        "pid_is_mine": me.pid == os.getpid(),
        "daemon": me.daemon,
        "authkey": me.authkey.hex(),
        "parent_name": parent.name,
        "parent_pid": parent.pid,
        "parent_alive": parent.is_alive(),
        "stdin": sys.stdin.read(),
        "start_method": mod.get_start_method(),
        "children": len(mod.active_children()),
    }
    with open(path, "w") as f:
        f.write(repr(facts))


def grandchild_report(method: str) -> tuple:
    """Start a grandchild with ``method``; return its exit code and who it saw as parent."""
    me = plait.process.current_process()
    p = plait.process.get_context(method).Process(target=exit_with, args=(os.getpid() % 100,))
    p.start()
    p.join(30)
    return p.exitcode, os.getpid() % 100, me.name, len(plait.process.active_children())


def leave_a_thread_behind(path: str) -> None:
    """Return at once, leaving a non-daemon thread that writes ``path`` a little later."""
    import threading

    def late_write():
        time.sleep(0.3)
        with open(path, "w") as f:
            f.write("written")

    threading.Thread(target=late_write).start()


def loaded_modules(*names: str) -> dict:
    """Which of ``names`` were imported before this call, and the interpreter's path."""
    return {"loaded": [n for n in names if n in sys.modules], "executable": sys.executable}


class FdBox:
    """An object that owns an fd and pickles it the way plait objects do (``fdpass``)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self):
        from plait._core import fdpass

        return _rebuild_box, (fdpass.reduce_fd(self.fd),)


def _rebuild_box(index: int) -> FdBox:
    from plait._core import fdpass

    return FdBox(fdpass.rebuild_fd(index))


def write_through(box: FdBox, data: bytes) -> None:
    """Write ``data`` to the fd the box carried into this child."""
    os.write(box.fd, data)
    os.close(box.fd)


class Point:
    """A class pickled by a registered reducer in the reduction tests."""

    def __init__(self, x: int) -> None:
        self.x = x


def _rebuild_point(x: int) -> Point:
    return Point(x * 10)


def reduce_point(point: Point) -> tuple:
    return _rebuild_point, (point.x,)


def point_x(point: Point) -> int:
    return point.x * 10
