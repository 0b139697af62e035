"""tqdm's ``process_map`` and ``thread_map`` run on plait under ``patch()``, and compute
what they compute without it (the real library, run in a subprocess each way)."""

from __future__ import annotations

import textwrap

import pytest

from tests.support import run_python

pytest.importorskip("tqdm")

PROGRAM = """
import sys
import threading

import plait
from tqdm.contrib.concurrent import process_map, thread_map


def square_where(x):
    import plait.process

    return x * x, plait.process.current_process().name


def square_thread(x):
    return x * x, threading.current_thread().name


if __name__ == "__main__":
    if sys.argv[1] == "patched":
        plait.patch()
    processes = process_map(square_where, range(20), max_workers=2, chunksize=3, disable=True)
    threads = thread_map(square_thread, range(20), max_workers=2, disable=True)
    print([value for value, _ in processes] == [x * x for x in range(20)])
    print([value for value, _ in threads] == [x * x for x in range(20)])
    # In a plait pool's worker, plait knows the process it started; elsewhere it is the
    # top of a program plait did not start.
    print(sorted({where != "MainProcess" for _, where in processes}))
    print(sorted({name.startswith("plait-") for _, name in threads}))
"""


@pytest.mark.timeout(120)
def test_process_map_and_thread_map_run_on_plait_under_patch(tmp_path):
    script = tmp_path / "maps.py"
    script.write_text(textwrap.dedent(PROGRAM))
    outputs = {}
    for mode in ("plain", "patched"):
        run = run_python(str(script), mode, timeout=100)
        assert run.returncode == 0, run.stderr
        outputs[mode] = run.stdout.split("\n")
    assert outputs["plain"][:4] == ["True", "True", "[False]", "[False]"]
    assert outputs["patched"][:4] == ["True", "True", "[True]", "[True]"]
