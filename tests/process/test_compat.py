"""The same scenarios on ``multiprocessing`` and on ``plait.process``: same observable results."""

from __future__ import annotations

import ast
import multiprocessing
import os
import re
import signal

import pytest

import plait.process
from tests.process.targets import (
    describe,
    exit_with,
    hard_exit,
    join_self,
    nothing,
    raise_error,
    signal_self,
    sleep,
    start_grandchild,
)
from tests.support import run_python

MODULES = [multiprocessing, plait.process]


@pytest.fixture(autouse=True)
def _stop_standard_helpers():
    """multiprocessing's fork server and resource tracker are children of this process too."""
    yield
    from multiprocessing import forkserver, resource_tracker

    forkserver._forkserver._stop()
    resource_tracker._resource_tracker._stop()


@pytest.fixture(params=MODULES, ids=lambda m: m.__name__)
def mod(request):
    """The standard library's module, then plait's."""
    return request.param


def _outcomes(mod, method, targets):
    ctx = mod.get_context(method)
    procs = [ctx.Process(target=t, args=a) for t, a in targets]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    return [p.exitcode for p in procs]


@pytest.mark.timeout(90)
def test_exit_codes_match(method):
    targets = [
        (nothing, ()),
        (exit_with, (4,)),
        (exit_with, ("a message",)),
        (raise_error, ()),
        (hard_exit, (9,)),
        (signal_self, (signal.SIGTERM,)),
        (5, ()),  # not callable: TypeError in the child
    ]
    assert _outcomes(plait.process, method, targets) == _outcomes(multiprocessing, method, targets)


def _misuse(mod, method):
    """Run every misuse on ``mod`` and record (exception type, message) or the value."""
    ctx = mod.get_context(method)
    seen = {}

    def record(name, fn):
        try:
            seen[name] = ("value", fn())
        except Exception as exc:
            seen[name] = (type(exc).__name__, str(exc))

    fresh = ctx.Process(target=sleep, args=(30,))
    record("group", lambda: ctx.Process(group=1))
    record("args not iterable", lambda: ctx.Process(target=nothing, args=5))
    record("join before start", lambda: fresh.join())
    record("is_alive before start", lambda: fresh.is_alive())
    record("exitcode before start", lambda: fresh.exitcode)
    record("pid before start", lambda: fresh.pid)
    record("sentinel before start", lambda: fresh.sentinel)
    record("bad name", lambda: setattr(fresh, "name", 5))
    record("bad context", lambda: mod.get_context("threads"))
    record("set concrete", lambda: ctx.set_start_method("spawn"))
    fresh.start()
    record("start twice", lambda: fresh.start())
    record("daemon after start", lambda: setattr(fresh, "daemon", True))
    record("join(-1) while running", lambda: (fresh.join(timeout=-1), fresh.exitcode)[1])
    record("join(0) while running", lambda: (fresh.join(timeout=0), fresh.exitcode)[1])
    record("close while running", lambda: fresh.close())
    fresh.kill()
    fresh.join(30)
    record("exitcode", lambda: fresh.exitcode)
    record("close", lambda: fresh.close())
    record("close twice", lambda: fresh.close())
    record("join after close", lambda: fresh.join())
    record("is_alive after close", lambda: fresh.is_alive())
    record("pid after close", lambda: fresh.pid)
    record("exitcode after close", lambda: fresh.exitcode)
    record("active children", lambda: mod.active_children())
    return seen


@pytest.mark.timeout(60)
def test_misuse_raises_the_same_errors(method):
    assert _misuse(plait.process, method) == _misuse(multiprocessing, method)


@pytest.mark.timeout(60)
def test_child_joining_itself_and_daemon_having_children(method):
    for mod in MODULES:
        ctx = mod.get_context(method)
        a = ctx.Process(target=join_self, args=(mod.__name__,))
        b = ctx.Process(target=start_grandchild, args=(mod.__name__, method), daemon=True)
        a.start()
        b.start()
        a.join(30)
        b.join(30)
        assert (a.exitcode, b.exitcode) == (5, 5), mod.__name__


def _description(mod, method, tmp_path):
    path = tmp_path / f"{mod.__name__}-{method}.txt"
    ctx = mod.get_context(method)
    p = ctx.Process(target=describe, args=(mod.__name__, str(path)), daemon=True)
    p.start()
    p.join(30)
    assert p.exitcode == 0
    facts = ast.literal_eval(path.read_text())
    assert re.fullmatch(r"\w+Process-\d+", facts.pop("name"))
    assert facts.pop("parent_pid") == os.getpid()
    assert facts.pop("authkey") == mod.current_process().authkey.hex()
    return facts


@pytest.mark.timeout(60)
def test_child_sees_the_same_facts(method, tmp_path):
    assert _description(plait.process, method, tmp_path) == _description(
        multiprocessing, method, tmp_path
    )


def _shapes(mod, method):
    """The reprs of a process through its life, with the variable parts masked."""
    ctx = mod.get_context(method)
    p = ctx.Process(target=sleep, args=(30,), name="worker", daemon=True)
    shapes = [repr(p)]
    p.start()
    shapes.append(repr(p))
    p.terminate()
    p.join(30)
    shapes.append(repr(p))
    p.close()
    shapes.append(repr(p))
    return [re.sub(r"\d+", "N", s) for s in shapes]


@pytest.mark.timeout(60)
def test_repr_matches(method):
    assert _shapes(plait.process, method) == _shapes(multiprocessing, method)


FRESH_INTERPRETER = """
import sys, importlib
mod = importlib.import_module(sys.argv[1])
out = [mod.get_start_method(allow_none=True), mod.get_all_start_methods()]
mod.set_start_method("spawn")
out.append(mod.get_start_method())
try:
    mod.set_start_method("fork")
except RuntimeError as exc:
    out.append(("RuntimeError", str(exc)))
mod.set_start_method("fork", force=True)
out.append(mod.get_start_method())
mod.set_start_method(None, force=True)
out.append(mod.get_start_method(allow_none=True))
out.append(mod.get_start_method())
out.append(type(mod.get_context()).__name__.lstrip("_"))
print(repr(out))
"""


@pytest.mark.timeout(60)
def test_start_method_functions_match():
    outputs = [
        run_python("-c", FRESH_INTERPRETER, mod.__name__, timeout=50, check=True).stdout
        for mod in MODULES
    ]
    assert outputs[0] == outputs[1]
    assert ast.literal_eval(outputs[0])[0] is None


def test_cpu_count_never_exceeds_the_standard_one(mod):
    assert 1 <= plait.process.cpu_count() <= multiprocessing.cpu_count()
    assert mod.freeze_support() is None


EXIT_WAITS_FOR_CHILDREN = """
import atexit, importlib, sys, time
mod = importlib.import_module(sys.argv[1])

def slow():
    time.sleep(0.5)
    sys.exit(3)

if __name__ == "__main__":
    ctx = mod.get_context(sys.argv[2])
    child = ctx.Process(target=slow)
    daemon = ctx.Process(target=time.sleep, args=(60,), daemon=True)
    # Registered before the first start, so it runs after the library's own exit hook.
    atexit.register(lambda: print(child.exitcode, daemon.exitcode, flush=True))
    child.start()
    daemon.start()
"""


@pytest.mark.timeout(90)
def test_exit_joins_children_and_terminates_daemons(method, tmp_path):
    script = tmp_path / "exiting.py"
    script.write_text(EXIT_WAITS_FOR_CHILDREN)
    outputs = [run_python(str(script), mod.__name__, method, timeout=60) for mod in MODULES]
    assert [o.stdout for o in outputs] == [f"3 {-signal.SIGTERM}\n"] * 2, outputs


@pytest.mark.timeout(60)
def test_sentinels_work_with_multiprocessing_connection_wait(method):
    from multiprocessing.connection import wait

    ctx = plait.process.get_context(method)
    quick, slow = ctx.Process(target=nothing), ctx.Process(target=sleep, args=(30,))
    quick.start()
    slow.start()
    assert wait([quick.sentinel, slow.sentinel], timeout=30) == [quick.sentinel]
    slow.kill()
    assert slow.sentinel in wait([slow.sentinel], timeout=30)
    for p in (quick, slow):
        p.join(30)
        p.close()
