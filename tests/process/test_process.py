"""Scenarios of ``plait.process.Process`` under every start method, with real processes."""

from __future__ import annotations

import os
import re
import select
import signal
import sys
import threading
import time

import pytest

import plait.process
from tests.process.conftest import FORKS_FROM_THREADS
from tests.process.targets import (
    SQUARERS,
    FdBox,
    exit_with,
    grandchild_report,
    hard_exit,
    identity,
    leave_a_thread_behind,
    loaded_modules,
    nothing,
    parent_pid,
    raise_error,
    signal_self,
    sleep,
    write_through,
)
from tests.support import ChildDied, child_pids, open_fds, run_in_child, run_python, wait_until

# -- exit codes and signals -----------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "target, args, expected",
    [
        (nothing, (), 0),
        (exit_with, (3,), 3),
        (exit_with, (None,), 0),
        (raise_error, (), 1),
        (hard_exit, (7,), 7),
        (signal_self, (signal.SIGTERM,), -signal.SIGTERM),
        (signal_self, (signal.SIGKILL,), -signal.SIGKILL),
    ],
    ids=["return", "sys.exit(3)", "sys.exit(None)", "exception", "os._exit", "sigterm", "sigkill"],
)
def test_exit_codes(method, target, args, expected, no_leaks):
    p = plait.process.get_context(method).Process(target=target, args=args)
    p.start()
    p.join(30)
    assert p.exitcode == expected
    assert not p.is_alive()
    p.close()


@pytest.mark.timeout(60)
def test_exception_prints_process_name_and_traceback(method, capfd):
    p = plait.process.get_context(method).Process(target=raise_error, name="Bomber")
    p.start()
    p.join(30)
    err = capfd.readouterr().err
    assert "Process Bomber:" in err
    assert "RuntimeError: boom" in err
    assert p.exitcode == 1


@pytest.mark.timeout(60)
def test_join_timeout_then_terminate_and_kill(method, no_leaks):
    ctx = plait.process.get_context(method)
    sleepers = [ctx.Process(target=sleep, args=(30,)) for _ in range(2)]
    for p in sleepers:
        p.start()
    first, second = sleepers
    first.join(timeout=0.2)
    assert first.is_alive() and first.exitcode is None
    first.join(timeout=-1)
    assert first.exitcode is None
    first.terminate()
    second.kill()
    first.join(30)
    second.join(30)
    assert first.exitcode == -signal.SIGTERM
    assert second.exitcode == -signal.SIGKILL
    first.terminate()  # ended: nothing to signal, no error
    for p in sleepers:
        p.close()


@pytest.mark.timeout(60)
def test_subclass_overriding_run(method, no_leaks):
    squarer = SQUARERS[method](5)
    squarer.start()
    squarer.join(30)
    assert squarer.exitcode == 25
    assert squarer.name == f"{type(squarer).__name__}-{squarer._identity[0]}"
    squarer.close()


@pytest.mark.timeout(60)
def test_child_sees_itself_and_its_parent(method, no_leaks):
    seen = run_in_child(identity, method=method)
    assert seen["pid"] == seen["os_pid"] != os.getpid()
    assert seen["name"].startswith(("ForkProcess-", "SpawnProcess-", "ForkServerProcess-"))
    assert seen["parent_pid"] == os.getpid()
    assert seen["parent_name"] == "MainProcess"
    assert seen["parent_alive"] is True
    assert seen["stdin"] == ""  # the parent's stdin is not shared
    assert seen["start_method"] == method
    assert plait.process.current_process().name == "MainProcess"
    assert plait.process.parent_process() is None


@pytest.mark.timeout(60)
def test_sentinel_is_a_pollable_fd(method, no_leaks):
    ctx = plait.process.get_context(method)
    short, long = ctx.Process(target=nothing), ctx.Process(target=sleep, args=(30,))
    short.start()
    long.start()
    poller = select.poll()
    poller.register(short.sentinel, select.POLLIN)
    poller.register(long.sentinel, select.POLLIN)
    ready = {fd for fd, _ in poller.poll(30_000)}
    assert ready == {short.sentinel}
    long.kill()
    long.join(30)
    short.join(30)
    assert (short.exitcode, long.exitcode) == (0, -signal.SIGKILL)
    short.close()
    long.close()


# -- what travels: lambdas, closures, functions of __main__ -----------------------------


@pytest.mark.timeout(60)
def test_lambda_and_closure_targets(method):
    base = 40
    assert run_in_child(lambda: base + 2, method=method) == 42

    def closure(x):
        return x * base

    assert run_in_child(closure, 2, method=method) == 80


@pytest.mark.timeout(60)
def test_child_exception_comes_back_through_the_helper(method):
    with pytest.raises(RuntimeError, match="boom"):
        run_in_child(raise_error, method=method)
    with pytest.raises(ChildDied) as died:
        run_in_child(hard_exit, 9, method=method)
    assert died.value.exitcode == 9


MAIN_SCRIPT = """
import os, sys
import plait.process

print("module body ran as", __name__, flush=True)

def square(x):
    sys.exit(x * x)

class Doubler(plait.process.Process):
    def __init__(self, x):
        super().__init__()
        self.x = x
    def run(self):
        sys.exit(self.x * 2)

if __name__ == "__main__":
    plait.process.set_start_method(sys.argv[1])
    p = plait.process.Process(target=square, args=(3,))
    p.start(); p.join(30)
    d = Doubler(4)
    d.start(); d.join(30)
    print("results", p.exitcode, d.exitcode, flush=True)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("start", ["spawn", "forkserver"])
def test_script_with_main_guard(start, tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(MAIN_SCRIPT)
    out = run_python(str(script), start, timeout=50)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "module body ran as __main__"
    assert lines[-1] == "results 9 8"
    # The children (or the fork server, once for all of them) re-ran the body, not the guard.
    assert set(lines[1:-1]) == {"module body ran as __mp_main__"}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("start", ["spawn", "forkserver"])
def test_function_of_a_main_without_file_travels_by_value(start):
    code = (
        "import sys, plait.process\n"
        "def cube(x):\n    sys.exit(x ** 3)\n"
        f"p = plait.process.get_context({start!r}).Process(target=cube, args=(2,))\n"
        "p.start(); p.join(30); print(p.exitcode)\n"
    )
    out = run_python("-c", code, timeout=50)
    assert out.stdout.strip() == "8", out.stderr


# -- daemons, threads, reaping, leaks -----------------------------------------------------


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by init, counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] != b"Z"


DAEMON_PARENT = """
import os, signal, sys, time
import plait.process

def sleep():
    time.sleep(60)

if __name__ == "__main__":
    method, how = sys.argv[1], sys.argv[2]
    ctx = plait.process.get_context(method)
    p = ctx.Process(target=sleep, daemon=True)
    p.start()
    print(p.pid, flush=True)
    sys.stdin.readline()
    if how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif how == "os._exit":
        os._exit(0)
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["exit", "sigkill", "os._exit"])
def test_daemon_child_dies_with_its_parent(method, how, tmp_path):
    import subprocess

    script = tmp_path / "daemon_parent.py"
    script.write_text(DAEMON_PARENT)
    parent = subprocess.Popen(
        [sys.executable, str(script), method, how],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        daemon_pid = int(parent.stdout.readline())
        assert pid_alive(daemon_pid)
        parent.stdin.write("go\n")
        parent.stdin.flush()
        parent.wait(30)
        assert wait_until(lambda: not pid_alive(daemon_pid), 20), f"daemon {daemon_pid} survived"
    finally:
        parent.kill()
        parent.wait(10)
        parent.stdin.close()
        parent.stdout.close()


FORKSERVER_PARENT = """
import os, signal, sys
import plait.process
from plait.process import forkserver

if __name__ == "__main__":
    p = plait.process.get_context("forkserver").Process(target=os.getpid)
    p.start(); p.join(30)
    print(forkserver._server_pid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.timeout(60)
def test_fork_server_exits_when_its_parent_is_killed(tmp_path):
    script = tmp_path / "fs_parent.py"
    script.write_text(FORKSERVER_PARENT)
    out = run_python(str(script), timeout=50)
    assert out.returncode == -signal.SIGKILL
    server_pid = int(out.stdout)
    assert wait_until(lambda: not pid_alive(server_pid), 20)


FORKSERVER_CTRL_C = """
import os, signal, sys
import plait.process
from plait.process import forkserver

if __name__ == "__main__":
    forkserver.ensure_running()  # returns once spawned: the server's Python still starts
    server = forkserver._server_pid
    os.kill(server, signal.SIGINT)  # as a terminal's Ctrl-C reaches the process group
    p = plait.process.get_context("forkserver").Process(target=sys.exit, args=(3,))
    p.start(); p.join(30)
    print(server, forkserver._server_pid, p.exitcode, flush=True)
"""


@pytest.mark.timeout(60)
def test_a_ctrl_c_while_the_fork_server_starts_does_not_stop_it(tmp_path):
    script = tmp_path / "fs_ctrl_c.py"
    script.write_text(FORKSERVER_CTRL_C)
    out = run_python(str(script), timeout=50)
    assert out.returncode == 0, out.stderr
    server, serving, exitcode = map(int, out.stdout.split())
    assert (serving, exitcode) == (server, 3)
    assert "KeyboardInterrupt" not in out.stderr


@FORKS_FROM_THREADS
@pytest.mark.timeout(60)
def test_daemon_started_from_a_short_lived_thread_outlives_the_thread(method, no_leaks):
    ctx = plait.process.get_context(method)
    started = []
    t = threading.Thread(target=lambda: started.append(_start_daemon_sleeper(ctx)))
    t.start()
    t.join(30)
    (p,) = started
    time.sleep(0.3)  # PR_SET_PDEATHSIG would have killed it when the thread ended
    assert p.is_alive()
    p.terminate()
    p.join(30)
    assert p.exitcode == -signal.SIGTERM
    p.close()


def _start_daemon_sleeper(ctx):
    p = ctx.Process(target=sleep, args=(30,), daemon=True)
    p.start()
    return p


@FORKS_FROM_THREADS
@pytest.mark.timeout(60)
def test_results_from_a_child_started_in_a_thread(method):
    results = []
    t = threading.Thread(target=lambda: results.append(run_in_child(parent_pid, method=method)))
    t.start()
    t.join(50)
    assert results == [os.getpid()]


@pytest.mark.timeout(60)
def test_active_children_reaps_finished_children(method, no_leaks):
    ctx = plait.process.get_context(method)
    quick = [ctx.Process(target=nothing) for _ in range(3)]
    slow = ctx.Process(target=sleep, args=(30,))
    for p in [*quick, slow]:
        p.start()
    poller = select.poll()
    for p in quick:
        poller.register(p.sentinel, select.POLLIN)
    assert wait_until(lambda: len(poller.poll(0)) == 3, 30)
    assert plait.process.active_children() == [slow]
    if method != "forkserver":  # forkserver children are the server's to reap
        assert child_pids() == {slow.pid}
    assert [p.exitcode for p in quick] == [0, 0, 0]
    slow.kill()
    slow.join(30)
    assert plait.process.active_children() == []
    for p in [*quick, slow]:
        p.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("start, count", [("fork", 200), ("spawn", 10), ("forkserver", 40)])
def test_many_processes_leak_nothing(start, count, no_leaks):
    ctx = plait.process.get_context(start)
    fds = open_fds()
    batch = []
    for i in range(count):
        p = ctx.Process(target=exit_with, args=(i % 7,), daemon=i % 2 == 0)
        p.start()
        batch.append((p, i % 7))
        if len(batch) == 20:
            _join_all(batch)
    _join_all(batch)
    del p  # joined, never closed: dropping the object releases its sentinel
    assert plait.process.active_children() == []
    assert open_fds() - fds <= {_server_fd()}


def _join_all(batch):
    for p, expected in batch:
        p.join(30)
        assert p.exitcode == expected
    batch.clear()


def _server_fd():
    forkserver = sys.modules.get("plait.process.forkserver")
    control = getattr(forkserver, "_control", None)
    return control.fileno() if control is not None else -1


@pytest.mark.timeout(60)
def test_unjoined_children_are_reaped_by_the_next_start(no_leaks):
    ctx = plait.process.get_context("fork")
    p = ctx.Process(target=nothing)
    p.start()
    pid = p.pid
    del p  # never joined: the registry still holds it
    assert wait_until(lambda: not pid_alive(pid), 10)
    q = ctx.Process(target=nothing)
    q.start()  # reaps the first one
    q.join(30)
    assert pid not in child_pids()
    assert plait.process.active_children() == []


# -- cpu_count ----------------------------------------------------------------------------


def test_cpu_count_is_bounded_by_the_affinity_mask():
    n = plait.process.cpu_count()
    assert 1 <= n <= len(os.sched_getaffinity(0)) <= os.cpu_count()


def _count_on_one_cpu() -> int:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    return plait.process.cpu_count()


def test_cpu_count_follows_a_narrowed_affinity_mask():
    assert run_in_child(_count_on_one_cpu) == 1


# -- nesting, concurrency, a fork server that dies ----------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize("inner", ["fork", "spawn", "forkserver"])
def test_a_child_starts_its_own_children(method, inner):
    code, expected, name, left = run_in_child(grandchild_report, inner, method=method)
    assert code == expected
    assert re.fullmatch(r"\w+Process-\d+", name)
    assert left == 0


@FORKS_FROM_THREADS
@pytest.mark.timeout(90)
def test_threads_start_processes_at_once(method, no_leaks):
    ctx = plait.process.get_context(method)
    codes: dict[int, int | None] = {}

    def starter(base):
        procs = [ctx.Process(target=exit_with, args=(base + i,)) for i in range(4)]
        for p in procs:
            p.start()
        for i, p in enumerate(procs):
            p.join(30)
            codes[base + i] = p.exitcode
            p.close()

    threads = [threading.Thread(target=starter, args=(10 * t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert codes == {code: code for code in codes} and len(codes) == 16


@pytest.mark.timeout(60)
def test_children_of_a_dead_fork_server_report_255_and_a_new_server_starts(no_leaks):
    from plait.process import forkserver

    ctx = plait.process.get_context("forkserver")
    orphan = ctx.Process(target=sleep, args=(30,))
    orphan.start()
    old_server = forkserver._server_pid
    os.kill(old_server, signal.SIGKILL)
    orphan.join(30)
    assert orphan.exitcode == 255  # as multiprocessing reports it: the status is lost
    os.kill(orphan.pid, signal.SIGKILL)  # it was reparented, not killed: clean it up
    assert wait_until(lambda: not pid_alive(orphan.pid), 10)
    orphan.close()
    fresh = ctx.Process(target=exit_with, args=(6,))
    fresh.start()
    fresh.join(30)
    assert fresh.exitcode == 6
    assert forkserver._server_pid not in (None, old_server)
    fresh.close()


UNGUARDED_SCRIPT = """
import sys
import plait.process

def hello():
    print("hello from", plait.process.current_process().name, flush=True)

plait.process.set_start_method(sys.argv[1], force=True)
p = plait.process.Process(target=hello)
p.start()
p.join(30)
print("exitcode", p.exitcode, flush=True)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("start", ["spawn", "forkserver"])
def test_script_without_main_guard_fails_in_the_child_instead_of_recursing(start, tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED_SCRIPT)
    out = run_python(str(script), start, timeout=50)
    assert out.returncode == 0, out.stderr
    # Exactly one top-level start; nothing started from inside a re-run of the script.
    assert out.stdout.count("exitcode") == 1
    if start == "spawn":
        assert out.stdout.splitlines()[-1] == "exitcode 1"
        assert "finished its bootstrapping phase" in out.stderr


MODULE_MAIN = """
import sys
import plait.process

def square(x):
    sys.exit(x * x)

if __name__ == "__main__":
    p = plait.process.get_context(sys.argv[1]).Process(target=square, args=(5,))
    p.start(); p.join(30)
    print("result", p.exitcode, flush=True)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("start", ["spawn", "forkserver"])
@pytest.mark.parametrize("layout", ["module", "package"])
def test_programs_run_with_dash_m(start, layout, tmp_path):
    if layout == "module":
        (tmp_path / "squaring.py").write_text(MODULE_MAIN)
    else:  # pkg/__main__.py is never re-run in children: its functions travel by value
        (tmp_path / "squaring").mkdir()
        (tmp_path / "squaring" / "__init__.py").write_text("")
        (tmp_path / "squaring" / "__main__.py").write_text(MODULE_MAIN)
    out = run_python("-m", "squaring", start, timeout=50, cwd=tmp_path)
    assert out.stdout.strip() == "result 25", out.stderr


@pytest.mark.timeout(60)
def test_child_waits_for_its_non_daemon_threads(method, tmp_path, no_leaks):
    path = tmp_path / "late.txt"
    p = plait.process.get_context(method).Process(target=leave_a_thread_behind, args=(str(path),))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    assert path.read_text() == "written"
    p.close()


@pytest.mark.timeout(60)
def test_threads_joining_the_same_child_all_see_its_exit_code(method, no_leaks):
    p = plait.process.get_context(method).Process(target=sleep, args=(0.3,))
    p.start()
    seen = []
    timeouts = [None, None, 30, 30]
    threads = [
        threading.Thread(target=lambda t=t: (p.join(t), seen.append(p.exitcode))) for t in timeouts
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert seen == [0, 0, 0, 0]
    p.join(30)
    assert p.exitcode == 0 and not p.is_alive()
    p.close()


@pytest.mark.timeout(60)
def test_fork_server_preloads_modules(no_leaks):
    from plait.process import forkserver

    with pytest.raises(TypeError, match="list of strings"):
        plait.process.set_forkserver_preload(["colorsys", 3])
    forkserver.stop_server()
    plait.process.set_forkserver_preload(["colorsys", "plait_no_such_module"])
    try:
        seen = run_in_child(loaded_modules, "colorsys", "wave", method="forkserver")
    finally:
        plait.process.set_forkserver_preload([])
    assert seen["loaded"] == ["colorsys"]


@pytest.mark.timeout(60)
def test_set_executable_chooses_the_interpreter_of_spawned_children(tmp_path):
    link = tmp_path / "python-link"
    link.symlink_to(sys.executable)
    plait.process.set_executable(str(link))
    try:
        seen = run_in_child(loaded_modules, method="spawn")
    finally:
        plait.process.set_executable(sys.executable)
    assert seen["executable"] == str(link)


@pytest.mark.timeout(60)
def test_objects_owning_fds_travel_to_the_child(method, no_leaks):
    r, w = os.pipe()
    try:
        p = plait.process.get_context(method).Process(
            target=write_through, args=(FdBox(w), b"through the inherited fd")
        )
        p.start()
        os.close(w)  # the child has its own copy now
        w = -1
        p.join(30)
        assert p.exitcode == 0
        assert os.read(r, 100) == b"through the inherited fd"
        assert os.read(r, 100) == b""  # no other copy of the write end is left open
        p.close()
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


@FORKS_FROM_THREADS
@pytest.mark.timeout(60)
def test_spawn_is_not_held_up_by_a_fork_from_another_thread(no_leaks):
    """A child forked by another thread while a spawn starts inherits the payload pipe;
    the spawned child must not wait for that unrelated process to exit."""
    stop = threading.Event()
    forked = []

    def fork_sleepers():
        while not stop.is_set():
            pid = os.fork()
            if pid == 0:
                time.sleep(5)
                os._exit(0)
            forked.append(pid)
            time.sleep(0.001)

    forker = threading.Thread(target=fork_sleepers)
    forker.start()
    try:
        ctx = plait.process.get_context("spawn")
        for _ in range(5):
            p = ctx.Process(target=int)
            p.start()
            p.join(4)  # a spawn is ~30 ms; a sleeper would hold it for 5 s
            assert p.exitcode == 0, "a spawned child waited for a forked sibling"
            p.close()
    finally:
        stop.set()
        forker.join(10)
        for pid in forked:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
