"""Only the process that started a fork server (or a fork helper) can make it fork.

``multiprocessing``'s server listens on a named Unix socket; since 3.14 each connection
must first pass an HMAC handshake with a key only the parent (and the children it hands
the key to) holds, so a stranger who connects is refused and the server serves on.
plait's control socket is one end of a socketpair: it has no address, and only the
parent holds it (see ``plait.process.forkserver``). The scenarios, with the probes of
``access_probe``:

* a stranger looks for an address of the server to connect to and asks it to fork: plait's
  server has none; the standard one refuses on 3.14+, and forks for the stranger before
  3.14 (which shows that the probe can obtain a fork when a server lets it);
* the parent asks on every seqpacket socket it holds: its server and its helpers fork
  (the probe works), and serve the next start as usual;
* each kind of relative of the parent (children of every start method, a raw
  ``os.fork``, a fork server's child and its own child) asks the same way: nothing forks.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

import plait.process
from plait.process import forkserver
from plait.process.forkserver import ForkHelper
from tests.process import access_probe, targets
from tests.process.conftest import FORKS_FROM_THREADS

# Helpers made here, and the fork children, fork from a test process that may run threads.
pytestmark = [pytest.mark.usefixtures("no_leaks"), pytest.mark.timeout(120), FORKS_FROM_THREADS]

PROBE = access_probe.__file__
PATIENCE = 5.0  # seconds a probe waits for a server's answer


def stranger(server_pid: int) -> dict:
    """Run the stranger's probe against ``server_pid`` from a process of its own."""
    done = subprocess.run(
        [sys.executable, PROBE, str(server_pid), str(PATIENCE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


def start_and_join(context, target, *args) -> int | None:
    p = context.Process(target=target, args=args)
    p.start()
    p.join(60)
    return p.exitcode


def test_a_stranger_finds_no_address_and_the_server_serves_on():
    forkserver.ensure_running()
    assert stranger(forkserver._server_pid) == {"addresses": [], "forked": 0}
    assert start_and_join(plait.process.get_context("forkserver"), targets.exit_with, 7) == 7


STANDARD = textwrap.dedent(
    """
    import json, os, subprocess, sys
    import multiprocessing
    from multiprocessing import forkserver

    if __name__ == "__main__":
        forkserver.ensure_running()
        server = forkserver._forkserver._forkserver_pid
        probe = subprocess.run(
            [sys.executable, sys.argv[1], str(server), sys.argv[2]],
            capture_output=True, text=True, timeout=60, check=True,
        )
        p = multiprocessing.get_context("forkserver").Process(target=os.getpid)
        p.start()
        p.join(60)
        print(json.dumps({"stranger": json.loads(probe.stdout), "after": p.exitcode}))
    """
)


def test_a_stranger_and_the_standard_forkserver(tmp_path):
    """3.14+ refuses the stranger (authkey); before, it forks for it: the probe works."""
    script = tmp_path / "standard_forkserver.py"
    script.write_text(STANDARD)
    done = subprocess.run(
        [sys.executable, str(script), PROBE, str(PATIENCE)],
        capture_output=True,
        text=True,
        timeout=100,
        check=True,
    )
    result = json.loads(done.stdout.splitlines()[-1])
    assert len(result["stranger"]["addresses"]) == 1
    assert result["stranger"]["forked"] == (0 if sys.version_info >= (3, 14) else 1)
    assert result["after"] == 0


def test_the_parent_can_and_the_server_serves_on():
    forkserver.ensure_running()
    assert access_probe.forks_obtained(PATIENCE) == 1
    helper = ForkHelper()
    try:
        assert access_probe.forks_obtained(PATIENCE) == 2
    finally:
        assert helper.close()
    assert start_and_join(plait.process.get_context("forkserver"), targets.exit_with, 7) == 7


def test_the_server_does_not_pass_its_end_on_to_programs_it_runs():
    """The server's end of the control socket is close-on-exec (``posix_spawn`` cleared it)."""
    context = plait.process.get_context("forkserver")
    assert start_and_join(context, targets.exit_with, 0) == 0  # the server is serving
    pid = forkserver._server_pid
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        fd = int(re.search(rb"serve\((\d+)\)", f.read())[1])
    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
        flags = int(re.search(r"flags:\s*(\d+)", f.read())[1], 8)
    assert flags & os.O_CLOEXEC


def test_children_cannot(method):
    forkserver.ensure_running()
    helper = ForkHelper()
    try:
        context = plait.process.get_context(method)
        assert start_and_join(context, access_probe.exit_with_forks_obtained) == 0
    finally:
        assert helper.close()


def test_a_raw_fork_cannot():
    forkserver.ensure_running()
    helper = ForkHelper()
    try:
        pid = os.fork()
        if pid == 0:
            code = 99
            try:
                code = access_probe.forks_obtained(PATIENCE)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        assert helper.close()


def test_a_forkserver_child_cannot_and_its_own_server_serves_its_children(tmp_path):
    forkserver.ensure_running()
    path = tmp_path / "report.json"
    context = plait.process.get_context("forkserver")
    assert start_and_join(context, access_probe.report_as_forkserver_child, str(path)) == 0
    assert json.loads(path.read_text()) == {"grandchild": 0, "mine": 1}
