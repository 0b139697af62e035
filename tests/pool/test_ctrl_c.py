"""Ctrl-C in a program that uses a pool: it exits promptly and leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.support import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROGRAM = """
import sys
from plait.pool import Pool
from tests.pool import tasks

if __name__ == "__main__":
    {body}
"""

BODY = """pool = Pool(2)
    print(" ".join(map(str, pool.stats().workers)), flush=True)
    pool.map(tasks.sleep_return, [60] * 4, chunksize=1)"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("shape", ["with-block", "no-close"])
@pytest.mark.timeout(60)
def test_sigint_stops_the_program_and_its_workers(shape, no_leaks):
    body = BODY
    if shape == "with-block":
        body = body.replace("pool = Pool(2)", "with Pool(2) as pool:").replace(
            "\n    ", "\n        "
        )
    code = PROGRAM.format(body=body)
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        workers = [int(pid) for pid in proc.stdout.readline().split()]
        assert len(workers) == 2
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        stderr = proc.stderr.read()
        proc.stderr.close()
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in stderr
    assert wait_until(lambda: not any(alive(pid) for pid in workers), 10), stderr
