"""The built wheel, as a user installs it: a fresh venv, no compiler, no source tree.

``make wheel`` builds the sdist and a repaired manylinux wheel per interpreter into
``dist/`` and runs this file with each (``PLAIT_WHEELHOUSE`` names the folder). The wheel
of the running Python is installed into a new venv with ``CC=false`` and a ``PATH`` that
holds only that venv (no gcc, no cc), binary packages only (and numpy, which the demo
shows); then, from a directory outside the source tree, every public module is
imported, the typing files are there, the ``PLAIT_PATCH`` hook patches an interpreter,
and the demo runs. Without a wheel for this
Python the test is skipped: it tests a build, and only ``make wheel`` makes one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from plait.process.api import SUBMODULES

WHEELHOUSE = Path(os.environ.get("PLAIT_WHEELHOUSE", Path(__file__).parents[1] / "dist"))
TAG = f"cp{sys.version_info[0]}{sys.version_info[1]}"
PUBLIC = [
    "plait.multiprocessing",
    *(f"plait.multiprocessing.{name}" for name in SUBMODULES if name != "popen_spawn_win32"),
    "plait.multiprocessing.dummy.connection",
    "plait.threading",
    "plait.queue",
    "plait.futures",
    "plait.coro",
    "plait.pool",
    "plait.managers",
    "plait.ipc",
    "plait.process",
    "plait.patch",
]


def the_wheel() -> Path:
    wheels = sorted(WHEELHOUSE.glob(f"plait-*-{TAG}-{TAG}-*manylinux*.whl"))
    if not wheels:
        pytest.skip(f"no manylinux wheel for {TAG} in {WHEELHOUSE}: `make wheel` builds them")
    return wheels[-1]


@pytest.mark.timeout(300)
def test_the_wheel_installs_and_runs_without_a_compiler(tmp_path):
    wheel = the_wheel()
    venv = tmp_path / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    bare = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "VIRTUAL_ENV"))
    }
    env = {**bare, "CC": "false", "CXX": "false", "PATH": str(venv / "bin")}
    install = subprocess.run(
        # numpy: the demo's shared-memory section shows an array (tests have it too)
        [python, "-m", "pip", "install", "-q", "--only-binary", ":all:", str(wheel), "numpy"],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=tmp_path,
    )
    assert install.returncode == 0, install.stderr
    code = (
        "import importlib, pathlib, plait\n"
        f"for name in {PUBLIC!r}: importlib.import_module(name)\n"
        "root = pathlib.Path(plait.__file__).parent\n"
        "print(root)\n"
        "print((root / 'py.typed').is_file(), len(list(root.rglob('*.pyi'))))\n"
        "print(sorted(p.name.split('.')[0] for p in (root / '_core').glob('*.so')))\n"
    )
    run = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    root, typed, so = run.stdout.splitlines()
    assert Path(root).is_relative_to(venv), "plait was imported from elsewhere than the wheel"
    assert typed.split()[0] == "True" and int(typed.split()[1]) >= 5
    assert so == "['_queue', '_ring', '_sync']"
    # The PLAIT_PATCH hook came with the wheel (setup.py puts it beside the package).
    probe = "import multiprocessing; print(multiprocessing.Pool.__module__)"
    patched = subprocess.run(
        [python, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "PLAIT_PATCH": "1"},
        cwd=tmp_path,
    )
    assert patched.stdout.strip() == "plait.pool.pool", patched.stderr
    demo = subprocess.run(
        [python, "-m", "plait", "demo"],
        capture_output=True,
        text=True,
        timeout=200,
        env=env,
        cwd=tmp_path,
    )
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
