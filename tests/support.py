"""What the tests share: the leak check, and the ways to run code in a child.

The leak check (``leak_check``) compares what the process holds after a test with what it
held before: child processes (zombies included, from ``/proc``), threads, fds and, when
asked, the names in ``/dev/shm``. Each is compared with its state when the test began, so
a leak fails the test that made it and not every test after it. Helper processes that live
on purpose until the interpreter exits (fork servers, the standard resource tracker) are
stopped first: they are not leaks of the test that happened to start them. The fixtures
built on it are defined once, in ``tests/conftest.py``.

Code runs elsewhere in three ways, each with one helper here:

- a function in a child ``Process``: ``start``, ``finish`` (join, or kill past a
  timeout), ``child`` (a forked plait child for the length of a ``with`` block),
  ``run_in_child`` (any start method, its return value or exception brought back);
- a program in a fresh interpreter: ``run_python``, ``python_with_fds`` (pickled objects
  and their fds handed over as a spawn start method does), ``valgrind_reports``;
- the same program on ``multiprocessing`` and on ``plait.multiprocessing``, expecting the
  same output: ``run_on_both``.

This module imports neither pytest nor the test modules: spawned children import it to
find ``run_in_child``'s target.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import plait
import plait.process
from plait._core import serialization

# -- what the process holds ------------------------------------------------------------


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


def describe_fds(fds: set[int]) -> dict[int, str]:
    """What each of ``fds`` points to (``/proc/self/fd`` links), for a failure message."""
    out = {}
    for fd in sorted(fds):
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            out[fd] = "?"
    return out


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


def shm_names() -> set[str]:
    """The names in /dev/shm now, but POSIX named semaphores (``sem.*``: the standard
    library's ``sem.mp-*``, loky's ``sem.loky-*``): other programs on this machine make
    and unlink those all the time, plait never."""
    if not os.path.isdir("/dev/shm"):
        return set()
    return {n for n in os.listdir("/dev/shm") if not n.startswith("sem.")}


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.01):
    """Poll ``predicate`` until it is true or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def outcomes_of(iterator, error: type) -> list:
    """Every value of a pool's result ``iterator``, or the ``error`` it raised in its place."""
    outcomes = []
    while True:
        try:
            outcomes.append(iterator.next(30))
        except StopIteration:
            return outcomes
        except error as exc:
            outcomes.append(exc)


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


# -- the leak check --------------------------------------------------------------------


def leak_check(*, shm: bool = False, fds: bool = True, collect: bool = False) -> Iterator[None]:
    """The body of a leak fixture: fail if the test leaves children, threads or fds behind.

    ``shm``: the names in ``/dev/shm`` are checked too (POSIX named semaphores excepted,
    see ``shm_names``). ``fds=False`` skips the fd check, for the standard library's
    variant of a scenario whose shared heap (behind ``Barrier`` and ``Value``) keeps an
    arena fd for the life of the process. ``collect``: a garbage collection runs before
    the fd check, so that fds held only by cycles of dropped objects do not count.
    """
    fds_before, threads, children = open_fds(), set(threading.enumerate()), child_pids()
    names = shm_names() if shm else set()
    yield
    stop_helper_processes()
    assert wait_until(
        lambda: child_pids() <= children, 10
    ), f"children left: {child_pids() - children}"
    assert wait_until(
        lambda: set(threading.enumerate()) <= threads, 10
    ), f"threads left: {set(threading.enumerate()) - threads}"
    if shm:
        assert wait_until(
            lambda: shm_names() <= names, 5
        ), f"left in /dev/shm: {shm_names() - names}"
    if fds:
        if collect:
            gc.collect()
        assert wait_until(
            lambda: open_fds() <= fds_before, 5
        ), f"fds left: {describe_fds(open_fds() - fds_before)}"


# -- a function in a child process -----------------------------------------------------


def start(Process: Callable[..., Any], target: Callable[..., object], *args: object):
    """Start ``target(*args)`` in a child made by ``Process`` (a ``Process`` class of the
    standard library or of plait); return the process, started."""
    process = Process(target=target, args=args)
    process.start()
    return process


def finish(process, timeout: float = 20) -> int | None:
    """Join ``process`` (kill it past ``timeout``); return its exit code."""
    process.join(timeout)
    if process.exitcode is None:
        process.kill()
        process.join(10)
    return process.exitcode


@contextlib.contextmanager
def child(target: Callable[..., object], *args: object) -> Iterator[plait.process.Process]:
    """Start ``target(*args)`` in a forked plait ``Process``; join it (kill after 10 s)."""
    process = start(plait.process.get_context("fork").Process, target, *args)
    try:
        yield process
    finally:
        finish(process, 10)


class ChildDied(RuntimeError):
    """The child ended without reporting a result."""

    def __init__(self, exitcode: int | None) -> None:
        super().__init__(f"child ended with exit code {exitcode} and no result")
        self.exitcode = exitcode


def _report(path: str, fn, args, kwargs) -> None:
    try:
        outcome = ("ok", fn(*args, **kwargs))
    except Exception as exc:  # the test wants to see it
        outcome = ("err", exc)
    with open(path, "wb") as f:
        f.write(serialization.dumps(outcome))


def run_in_child(fn, *args, method: str = "fork", timeout: float = 30.0, **kwargs):
    """Call ``fn(*args, **kwargs)`` in a child started with ``method``; return its result.

    The child pickles ``("ok", value)`` or ``("err", exception)`` into a temporary file (a
    file works under every start method: nothing has to be inherited); the exception is
    raised again here. A child that dies without writing raises ``ChildDied``.
    """
    fd, path = tempfile.mkstemp(prefix="plait-test-")
    os.close(fd)
    try:
        ctx = plait.process.get_context(method)
        p = ctx.Process(target=_report, args=(path, fn, args, kwargs))
        p.start()
        p.join(timeout)
        if p.exitcode is None:
            p.kill()
            p.join(5)
            raise TimeoutError(f"child {p.pid} still running after {timeout} s")
        exitcode = p.exitcode
        p.close()
        with open(path, "rb") as f:
            data = f.read()
        if not data:
            raise ChildDied(exitcode)
        kind, value = serialization.loads(data)
        if kind == "err":
            raise value
        return value
    finally:
        os.unlink(path)


# -- a program in a fresh interpreter --------------------------------------------------


def run_python(
    *args: str | Path, timeout: float, sys_path: bool = False, **popen: Any
) -> subprocess.CompletedProcess[str]:
    """Run this interpreter with ``args`` and return the finished run, stdout and stderr
    captured as text. ``sys_path``: the child's ``PYTHONPATH`` is this process's
    ``sys.path``, so it imports what this one imports. ``popen`` goes to
    ``subprocess.run`` (``env``, ``cwd``, ``input``...)."""
    if sys_path:
        env = dict(popen.pop("env", None) or os.environ)
        popen["env"] = {**env, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **popen)


@contextlib.contextmanager
def python_with_fds(code: str, data: bytes, collector: Any) -> Iterator[subprocess.Popen]:
    """What a spawn start method does: start this interpreter on ``-c code`` with the fds
    of ``collector`` (the ``FdCollector`` under which ``data`` was pickled) inherited and
    their numbers as arguments, close the collector, write ``data`` to the child's stdin.
    Yield the child; kill it at the end if it still runs."""
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", code, *map(str, collector.fds)],
            stdin=subprocess.PIPE,
            pass_fds=collector.fds,
        )
    finally:
        collector.close()
    try:
        with child.stdin:
            child.stdin.write(data)
        yield child
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)


def valgrind_reports(scenario: str, *, timeout: float) -> list[str]:
    """Run the program ``scenario`` (which prints ``scenario done`` last) under valgrind,
    with Python's allocator off so that valgrind sees every block; return valgrind's
    reports, one string each."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(plait.__file__)))
    env = dict(os.environ, PYTHONMALLOC="malloc", PYTHONPATH=root)
    proc = subprocess.run(
        ["valgrind", "-q", "--num-callers=40", sys.executable, "-c", scenario],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert "scenario done" in proc.stdout, proc.stderr[-3000:]
    # One report per blank-line-separated block of "==pid== ..." lines.
    return re.split(r"==\d+== \n", proc.stderr)


def run_on_both(tmp_path: Path, source: str, method: str, timeout: float) -> str:
    """Run ``source`` as a script once importing each module; return the common stdout.

    ``source`` names the module ``{module}``; the script gets ``method`` as its argument.
    """
    outputs = {}
    for module in ("multiprocessing", "plait.multiprocessing"):
        script = tmp_path / f"program_on_{module.replace('.', '_')}.py"
        script.write_text(textwrap.dedent(source.format(module=module)))
        run = run_python(script, method, timeout=timeout, cwd=tmp_path)
        assert run.returncode == 0, f"{module}: {run.stderr}"
        outputs[module] = run.stdout
    assert outputs["plait.multiprocessing"] == outputs["multiprocessing"], outputs
    return outputs["multiprocessing"]
