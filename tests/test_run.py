"""``python -m plait run``: a program runs as under ``python``, but on plait's faces.

Each scenario runs the same program with ``python`` and with ``python -m plait run`` and
expects the same argv, ``__name__``, output, exit code and traceback; only the module
the work ran on differs (``multiprocessing`` against ``plait``).
"""

from __future__ import annotations

import textwrap

import pytest

from tests.support import run_python

PROGRAM = """
import sys
import multiprocessing


def square(x):
    return x * x


if __name__ == "__main__":
    print(sys.argv, __name__)
    with multiprocessing.get_context(sys.argv[1]).Pool(2) as pool:
        print(pool.map(square, range(4)), "ran on", type(pool).__module__.split(".")[0])
    if sys.argv[2] == "exit":
        sys.exit(3)
    if sys.argv[2] == "raise":
        raise ValueError("boom")
"""

TOOL = """
import sys
import multiprocessing

if __name__ == "__main__":
    print(sys.argv[1:], __name__, "ran on", multiprocessing.Queue.__module__.split(".")[0])
    raise SystemExit(int(sys.argv[1]))
"""


def _run(tmp_path, *argv):
    return run_python(*argv, timeout=100, cwd=tmp_path, sys_path=True)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("ending", ["normal", "exit", "raise"])
def test_a_script_runs_as_under_python_but_on_plait(tmp_path, method, ending):
    (tmp_path / "program.py").write_text(textwrap.dedent(PROGRAM))
    plain = _run(tmp_path, "program.py", method, ending)
    patched = _run(tmp_path, "-m", "plait", "run", "program.py", method, ending)
    assert patched.returncode == plain.returncode == {"normal": 0, "exit": 3, "raise": 1}[ending]
    assert plain.stdout.count("ran on multiprocessing") == 1, plain.stderr
    assert patched.stdout == plain.stdout.replace("ran on multiprocessing", "ran on plait")
    assert patched.stderr == plain.stderr  # the traceback starts at the program, as python's


@pytest.mark.timeout(60)
def test_a_module_runs_as_under_python_dash_m(tmp_path):
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "__init__.py").write_text("")
    (tmp_path / "tools" / "tool.py").write_text(textwrap.dedent(TOOL))
    plain = _run(tmp_path, "-m", "tools.tool", "5")
    patched = _run(tmp_path, "-m", "plait", "run", "-m", "tools.tool", "5")
    assert plain.returncode == patched.returncode == 5
    assert plain.stdout == "['5'] __main__ ran on multiprocessing\n"
    assert patched.stdout == "['5'] __main__ ran on plait\n"


@pytest.mark.timeout(60)
def test_an_uncaught_keyboard_interrupt_ends_the_process_by_sigint(tmp_path):
    (tmp_path / "interrupted.py").write_text("raise KeyboardInterrupt\n")
    plain = _run(tmp_path, "interrupted.py")
    patched = _run(tmp_path, "-m", "plait", "run", "interrupted.py")
    assert plain.returncode == patched.returncode != 0
    assert plain.stderr == patched.stderr


def test_run_without_a_program_prints_the_usage(tmp_path):
    run = _run(tmp_path, "-m", "plait", "run")
    assert run.returncode == 2
    assert "usage: python -m plait run" in run.stderr
