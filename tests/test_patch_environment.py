"""PLAIT_PATCH: the ``.pth`` hook that plait installs patches every interpreter started
with the variable set, and costs nothing without it. Each test starts a real interpreter
of this environment (where ``make`` installed plait, hook included)."""

from __future__ import annotations

import json
import os
import site
import sys
import textwrap

import pytest

from tests.support import run_python

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = """
import json, sys
import multiprocessing, concurrent.futures, threading, queue
print(json.dumps({
    "pool": multiprocessing.Pool.__module__ if isinstance(multiprocessing.Pool, type)
    else "standard",
    "executor": concurrent.futures.ProcessPoolExecutor.__module__,
    "threading": threading.Lock.__module__,
    "queue": queue.Queue.__module__,
}))
"""


def start(code: str, value: str | None, *args: str, cwd: str | None = None):
    env = {key: val for key, val in os.environ.items() if key != "PLAIT_PATCH"}
    env["PYTHONPATH"] = ROOT
    if value is not None:
        env["PLAIT_PATCH"] = value
    return run_python(*(["-c", code] if code else []), *args, timeout=100, env=env, cwd=cwd)


def test_the_hook_is_installed_beside_plait():
    hooks = [
        directory
        for directory in site.getsitepackages()
        if os.path.exists(os.path.join(directory, "plait-patch.pth"))
    ]
    assert hooks, (
        "plait-patch.pth is not in site-packages: install plait (make test does) "
        f"into {sys.prefix}"
    )


def test_unset_the_interpreter_imports_neither_plait_nor_multiprocessing():
    run = start("import sys; print(sorted({'plait', 'multiprocessing'} & set(sys.modules)))", None)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
    assert run.stderr == ""


@pytest.mark.parametrize("value", ["", "0"])
def test_empty_or_zero_is_off(value):
    run = start(PROBE, value)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["pool"] == "standard"


def test_one_patches_multiprocessing_and_futures_but_not_threading_or_queue():
    run = start(PROBE, "1")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {
        "pool": "plait.pool.pool",
        "executor": "plait.pool.executor",
        "threading": "_thread",
        "queue": "queue",
    }


def test_a_list_of_options_patches_threading_and_queue_too():
    run = start(PROBE, "threading,queue")
    assert run.returncode == 0, run.stderr
    probed = json.loads(run.stdout)
    assert probed["pool"] == "plait.pool.pool"
    assert probed["threading"].startswith("plait.")
    assert probed["queue"].startswith("plait.")


def test_a_value_it_does_not_understand_is_named_once_and_patches_nothing():
    run = start(PROBE, "thread")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["pool"] == "standard"
    assert run.stderr.count("PLAIT_PATCH='thread' is not understood (thread)") == 1


@pytest.mark.timeout(180)
def test_a_test_runner_started_with_it_runs_the_tests_on_plait(tmp_path):
    # The documented use: patch a tool you cannot edit. pytest itself is the tool here;
    # the test it runs starts a spawned pool and reports where the work ran.
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(
            """
            import multiprocessing, os

            def pid(_):
                return os.getpid()

            def test_pool_is_plait():
                with multiprocessing.get_context("spawn").Pool(2) as pool:
                    assert type(pool).__module__ == "plait.pool.pool"
                    pids = set(pool.map(pid, range(8)))
                assert os.getpid() not in pids
            """
        )
    )
    run = start(
        "", "1", "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path), cwd=tmp_path
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout


STANDARD_CHILDREN = """
import multiprocessing
import sys

import plait


def report(q):
    q.put(plait.patched_modules())


if __name__ == "__main__":
    # What a library that keeps the standard module does (joblib's own backends): its
    # children start through the standard bootstrap, which must find standard functions.
    standard = vars(multiprocessing)["get_context"](sys.argv[1])
    q = standard.SimpleQueue()
    child = standard.Process(target=report, args=(q,))
    child.start()
    print(bool(plait.patched_modules()), q.get(), type(child).__module__)
    child.join(60)
    print(child.exitcode)
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_children_the_standard_module_starts_run_its_bootstrap_unpatched(tmp_path, method):
    script = tmp_path / "standard_children.py"
    script.write_text(STANDARD_CHILDREN)
    run = start("", "1", str(script), method, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["True [] multiprocessing.context", "0"]
