"""Every program in ``examples/`` runs, ends on its own in time, and prints what it claims.

Each program runs as a user runs it, ``python examples/NAME.py`` with its default
(small) arguments, in a fresh interpreter that imports the plait under test, in a
session of its own: past the time bound the whole process group is killed, so a hung
example leaves no process behind. It must exit with 0 and print the lines ``CLAIMS``
holds for it, the facts it reports (counts checked against an answer computed another
way, the connections held at once, the task that timed out), not only that it ran.
A new file in ``examples/`` is collected at once, and fails until its claims are added.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import wait_until

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PROGRAMS = sorted(EXAMPLES.glob("*.py"))
TIME_BOUND = 90  # seconds one program may take on a loaded machine; they take a few

# What each program must print (regular expressions, searched line by line).
CLAIMS: dict[str, list[str]] = {
    "crawler.py": [
        r"^crawled 300 pages in ",
        r"^broken links: 30 \(404\)",
        r"^the server served at most [1-8] requests at once \(the pool's bound: 8\)$",
        r"^the crawl found every page of the site's map, each fetched once$",
    ],
    "echo_server.py": [
        r"^echo server on 127\.0\.0\.1:\d+; 1000 clients x 20 lines$",
        r"^the server held 1000 connections at once$",
        r"^20000 lines echoed in ",
    ],
    "manager_two_machines.py": [
        r"^manager serving on 127\.0\.0\.1:\d+$",
        *(rf"^worker {k} \(.+:\d+\) added \d+$" for k in range(4)),
        r"^2 workers of this side reported to 127\.0\.0\.1:\d+$",
        r"^the shared dict holds 4 entries",
        r"^sum of squares below 1000000: (\d+) \(the formula says \1\)$",
        r"^every worker of both sides wrote its share; the server is shut down$",
    ],
    "pipeline.py": [
        r"^20000 lines -> \d+ words through 3 stages in ",
        r"^the counts match the parent's own; every stage ended with exit code 0$",
    ],
    "pool_hashers.py": [
        r"^24 files \(24 MiB\) hashed in ",
        r"^failed: never-written\.fifo: TimeoutError: .*ran over its timeout of 2\.0 s",
        # the worker killed at the timeout counts as replaced from the moment it is killed
        r"^pool statistics: tasks done 24, failed 1, workers replaced 1$",
        r"^all 24 digests match hashlib in the parent$",
    ],
    "process_start_methods.py": [
        *(rf"^ *{m}: square\(7\) -> exit code 49 in " for m in ("fork", "spawn", "forkserver")),
        r"^ *a lambda target -> exit code 4$",
        r"terminated -> <ForkProcess .* stopped exitcode=-SIGTERM daemon>$",
    ],
    "producer_consumer.py": [
        r"^consumer-0: tested \d+ numbers, \d+ primes$",
        r"^2 producers, 2 consumers: 20000 numbers in ",
        r"^primes below 20000: 2262 \(a sieve says 2262\)$",
        r"^every number was consumed once; all processes ended with exit code 0$",
    ],
    "threads_meet_coroutines.py": [
        r"^20000 numbers hashed; first: 0 -> c31bca45696e$",
        r"^every number of every producer was hashed once, and right$",
        r"^main task: finally ran$",
    ],
}


def run_example(program: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``program`` with this interpreter and this process's ``sys.path``; past
    ``TIME_BOUND`` kill its whole process group and fail."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with subprocess.Popen(
        [sys.executable, str(program)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env,
        start_new_session=True,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=TIME_BOUND)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=30)
            pytest.fail(
                f"{program.name}, or a process it left holding its output, still ran after "
                f"{TIME_BOUND} s\n{out}\n{err}"
            )
    # Helpers that end with the program (a fork server reads EOF) take a moment to go.
    gone = wait_until(lambda: not group_alive(proc.pid), timeout=10)
    if not gone:
        os.killpg(proc.pid, signal.SIGKILL)
    assert gone, f"{program.name} left processes running 10 s after it ended"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def group_alive(pgid: int) -> bool:
    """Whether a process of the process group ``pgid`` still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.timeout(TIME_BOUND + 60)
@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.name)
def test_example_runs_and_prints_what_it_claims(program: Path, tmp_path: Path, no_leaks) -> None:
    claims = CLAIMS.get(program.name)
    assert claims, f"{program.name} is new: put the lines it must print in CLAIMS"
    run = run_example(program, tmp_path)
    assert run.returncode == 0, f"{program.name} exited with {run.returncode}:\n{run.stderr}"
    missing = [c for c in claims if not re.search(c, run.stdout, re.MULTILINE)]
    assert not missing, f"{program.name} did not print {missing}; it printed:\n{run.stdout}"


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.name)
def test_example_is_a_program_that_says_what_it_shows(program: Path) -> None:
    tree = ast.parse(program.read_text(), str(program))
    assert ast.get_docstring(tree), f"{program.name} has no module docstring"
    mains = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
    assert mains, f"{program.name} has no main()"
    assert 'if __name__ == "__main__":' in program.read_text(), f"{program.name} has no guard"


def test_every_claim_belongs_to_an_example() -> None:
    assert sorted(CLAIMS) == [p.name for p in PROGRAMS]
