"""Starts that fail for real (no fork allowed, no fd left) fail alone and leave nothing.

The failures are made by the kernel, not by mocks: a fork server whose process limit is
exhausted (a pids cgroup when we are root, whom ``RLIMIT_NPROC`` does not bind;
``RLIMIT_NPROC`` otherwise), a fork server or a parent with no fd left
(``RLIMIT_NOFILE``, set from outside with ``prlimit``), preparation data too large for
the fork server's control socket.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import socket
import sys
import textwrap

import pytest

import plait.process
from plait.process import forkserver
from tests.support import run_python, wait_until

pytestmark = pytest.mark.timeout(60)

_PIDS_CGROUP = "/sys/fs/cgroup/pids"


@contextlib.contextmanager
def forks_forbidden(pid: int):
    """While inside, every ``fork`` of process ``pid`` fails with ``EAGAIN``."""
    if os.geteuid() != 0:
        limits = resource.prlimit(pid, resource.RLIMIT_NPROC)
        resource.prlimit(pid, resource.RLIMIT_NPROC, (0, limits[1]))
        try:
            yield
        finally:
            resource.prlimit(pid, resource.RLIMIT_NPROC, limits)
        return
    group = os.path.join(_PIDS_CGROUP, f"plait-test-{os.getpid()}")
    try:
        os.mkdir(group)
    except OSError as e:
        pytest.skip(f"root, and no pids cgroup to limit forks with: {e}")
    try:
        _write(os.path.join(group, "cgroup.procs"), pid)
        try:
            _write(os.path.join(group, "pids.max"), 1)  # the server itself, nothing more
            yield
        finally:
            _write(os.path.join(_PIDS_CGROUP, "cgroup.procs"), pid)
    finally:
        os.rmdir(group)


def _write(path: str, value: int) -> None:
    with open(path, "w") as f:
        f.write(str(value))


@contextlib.contextmanager
def fds_limited(pid: int, spare: int):
    """While inside, process ``pid`` can open ``spare`` more fds, then gets ``EMFILE``."""
    # The server closes a finished child's fds just after reporting its exit code.
    assert wait_until(lambda: "anon_inode:[pidfd]" not in _fd_targets(pid).values(), 10)
    used = set(_fd_targets(pid))
    free = (fd for fd in range(1 << 20) if fd not in used)
    for _ in range(spare):
        next(free)
    limits = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (next(free), limits[1]))
    try:
        yield
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, limits)


def _fd_targets(pid: int) -> dict[int, str]:
    targets = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):
            targets[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
    return targets


def _exit_code(ctx, code: int) -> int | None:
    """Start a child that exits with ``code``; return the exit code it reported."""
    p = ctx.Process(target=sys.exit, args=(code,))
    p.start()
    p.join(30)
    exitcode = p.exitcode
    p.close()
    return exitcode


def test_fork_server_survives_a_fork_that_fails(no_leaks):
    ctx = plait.process.get_context("forkserver")
    assert _exit_code(ctx, 3) == 3
    server = forkserver._server_pid
    with forks_forbidden(server):
        with pytest.raises(BlockingIOError) as failed:
            ctx.Process(target=sys.exit, args=(4,)).start()
    assert failed.value.errno == errno.EAGAIN
    assert "fork server could not start a child" in str(failed.value)
    assert _exit_code(ctx, 5) == 5
    assert forkserver._server_pid == server  # the same server served on


def test_fork_server_kills_a_child_it_cannot_watch(no_leaks):
    ctx = plait.process.get_context("forkserver")
    assert _exit_code(ctx, 3) == 3
    server = forkserver._server_pid
    before = _children_of(server)
    with fds_limited(server, spare=1):  # the request's socket fits, the pidfd does not
        with pytest.raises(OSError) as failed:
            ctx.Process(target=sys.exit, args=(4,)).start()
        assert _children_of(server) == before  # killed and reaped, not left a zombie
    assert failed.value.errno == errno.EMFILE
    assert _exit_code(ctx, 5) == 5
    assert forkserver._server_pid == server


def _children_of(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(p) for p in f.read().split()}


def test_fork_server_start_with_oversized_preparation_data_leaks_nothing(no_leaks):
    ctx = plait.process.get_context("forkserver")
    forkserver.stop_server()
    ctx.set_forkserver_preload(["m" * 400_000])  # more than one seqpacket record holds
    try:
        with pytest.raises(OSError) as failed:
            ctx.Process(target=sys.exit, args=(4,)).start()
        assert failed.value.errno == errno.EMSGSIZE
    finally:
        ctx.set_forkserver_preload([])
    assert forkserver._server_pid is None
    assert _exit_code(ctx, 5) == 5


PARENT_OUT_OF_FDS = """
import errno, os, resource, sys, time
import plait.process

if __name__ == "__main__":
    ctx = plait.process.get_context("fork")
    warm = ctx.Process(target=sys.exit, args=(0,))
    warm.start(); warm.join(30)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (os.dup(0), hard))  # no fd left after this
    p = ctx.Process(target=time.sleep, args=(60,))
    try:
        p.start()
        print("started", flush=True)
    except OSError as e:
        print("refused", errno.errorcode[e.errno], "killed and reaped" in str(e), flush=True)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        print("children left", os.waitpid(-1, os.WNOHANG), flush=True)
    except ChildProcessError:
        print("no children", flush=True)
    again = ctx.Process(target=sys.exit, args=(3,))
    again.start(); again.join(30)
    print("again", again.exitcode, flush=True)
"""


def test_fork_parent_out_of_fds_kills_and_reaps_the_child(tmp_path):
    script = tmp_path / "out_of_fds.py"
    script.write_text(textwrap.dedent(PARENT_OUT_OF_FDS))
    out = run_python(str(script), timeout=50)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["refused EMFILE True", "no children", "again 3"]


def test_fork_server_survives_a_requester_that_hangs_up_before_the_reply(no_leaks):
    ctx = plait.process.get_context("forkserver")
    assert _exit_code(ctx, 3) == 3
    server = forkserver._server_pid
    before = _children_of(server)
    mine, theirs = socket.socketpair()
    with mine:
        with theirs:
            forkserver._request([theirs.fileno()], False)
    # The child the server forked reads no payload and exits; the server's replies
    # (pid, exit code) go to a closed socket.
    assert wait_until(lambda: _children_of(server) == before, 10)
    assert _exit_code(ctx, 5) == 5
    assert forkserver._server_pid == server
