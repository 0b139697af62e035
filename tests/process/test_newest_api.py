"""The newest standard process API on every supported Python: ``Process.interrupt()``
(3.14), and ``cpu_count`` under ``-X cpu_count`` / ``PYTHON_CPU_COUNT`` with
``process_cpu_count`` (3.13). Each scenario runs on plait everywhere and on the standard
module where this Python has the API, and both must give the same result."""

from __future__ import annotations

import multiprocessing
import os
import sys
import time

import pytest

import plait.process
from tests.support import run_python

pytestmark = pytest.mark.timeout(60)

HAS_INTERRUPT = hasattr(multiprocessing.Process, "interrupt")
HAS_CPU_OVERRIDE = sys.version_info >= (3, 13)


def wait_for_ctrl_c(ready) -> None:
    """Exit 7 on KeyboardInterrupt, after saying it is ready for it."""
    try:
        ready.set()
        time.sleep(30)
    except KeyboardInterrupt:
        sys.exit(7)
    sys.exit(1)


def fork_context(name: str):
    """The fork context of ``name``; skips the standard module before 3.14."""
    if name == "plait":
        return plait.process.get_context("fork")
    if not HAS_INTERRUPT:
        pytest.skip("Process.interrupt() is new in Python 3.14")
    return multiprocessing.get_context("fork")


@pytest.mark.parametrize("name", ["plait", "multiprocessing"])
def test_interrupt_raises_keyboard_interrupt_in_the_child(name, no_leaks):
    ctx = fork_context(name)
    ready = ctx.Event()
    p = ctx.Process(target=wait_for_ctrl_c, args=(ready,))
    p.start()
    assert ready.wait(30)
    p.interrupt()
    p.join(30)
    assert p.exitcode == 7
    p.interrupt()  # it has exited: nothing happens, as for terminate()
    p.close()
    with pytest.raises(ValueError, match="closed"):
        p.interrupt()


@pytest.mark.parametrize("name", ["plait", "multiprocessing"])
def test_interrupt_before_start_is_the_standard_error(name):
    with pytest.raises(AttributeError):
        fork_context(name).Process(target=int).interrupt()


def counts(args: list[str], env: dict[str, str], code: str) -> list[str]:
    run = run_python(
        *args,
        "-c",
        code,
        timeout=30,
        sys_path=True,
        env={**os.environ, **env},
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


PLAIT = "import plait.process as p; print(p.cpu_count(), p.process_cpu_count())"
PLAIT_FACE = "import plait.multiprocessing as m; print(m.cpu_count(), m.get_context().cpu_count())"
STANDARD = "import os, multiprocessing as m; print(m.cpu_count(), os.process_cpu_count())"


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["-X", "cpu_count=3"], {}, "3"),
        ([], {"PYTHON_CPU_COUNT": "5"}, "5"),
        (["-X", "cpu_count=3"], {"PYTHON_CPU_COUNT": "5"}, "3"),  # the command line wins
        (["-X", "cpu_count=default"], {}, None),
    ],
)
def test_cpu_count_honours_the_user_s_override(args, env, expected):
    natural = str(plait.process.cpu_count())
    want = [expected or natural] * 2
    assert counts(args, env, PLAIT) == want
    assert counts(args, env, PLAIT_FACE) == want
    if HAS_CPU_OVERRIDE:
        standard = counts(args, env, STANDARD)
        if expected is not None:
            assert standard == want
        else:  # no override: the machine's count and the affinity mask's, as documented
            assert standard[1] == str(len(os.sched_getaffinity(0)))


def test_the_environment_is_ignored_under_dash_e():
    path = f"import sys; sys.path[:0] = {sys.path!r}; "
    natural = str(plait.process.cpu_count())
    assert counts(["-E"], {"PYTHON_CPU_COUNT": "5"}, path + PLAIT) == [natural] * 2
    if HAS_CPU_OVERRIDE:
        standard = counts(["-E"], {"PYTHON_CPU_COUNT": "5"}, STANDARD)
        assert standard[1] == str(len(os.sched_getaffinity(0)))
