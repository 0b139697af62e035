"""A system without what plait needs: one ImportError that names it, and the standard
modules still work there.

The missing system call is real: a child installs a seccomp filter that makes the
kernel answer ``pidfd_open`` or ``memfd_create`` with ``ENOSYS`` (what a kernel before
5.3 answers) or ``EPERM`` (what a container's profile answers), then imports plait, then
runs the same program on ``multiprocessing``. Another operating system is simulated by
``sys.platform``, which is all the check reads of it.
"""

from __future__ import annotations

import errno
import json
import platform
import textwrap

import pytest

from tests.support import run_python

# Syscall numbers and the audit arch of the machines the filter knows.
SYSCALLS = {
    "x86_64": (0xC000003E, {"pidfd_open": 434, "memfd_create": 319, "waitid": 247}),
    "aarch64": (0xC00000B7, {"pidfd_open": 434, "memfd_create": 279, "waitid": 95}),
}

REFUSE = textwrap.dedent(
    """
    import ctypes, json, struct, sys

    def refuse(arch, nr, errno_):
        # seccomp BPF: if arch matches and the syscall is nr, fail it with errno_.
        ops = [
            (0x20, 0, 0, 4),  # ld [4]: arch
            (0x15, 0, 3, arch),  # jeq arch, else allow
            (0x20, 0, 0, 0),  # ld [0]: syscall number
            (0x15, 0, 1, nr),  # jeq nr, else allow
            (0x06, 0, 0, 0x00050000 | errno_),  # ret ERRNO
            (0x06, 0, 0, 0x7FFF0000),  # ret ALLOW
        ]
        code = b"".join(struct.pack("HBBI", *op) for op in ops)
        buf = ctypes.create_string_buffer(code)
        prog = struct.pack("HxxxxxxP", len(ops), ctypes.addressof(buf))
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
        assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
        fprog = ctypes.create_string_buffer(prog)
        assert libc.prctl(22, 2, ctypes.addressof(fprog), 0, 0) == 0, ctypes.get_errno()
    """
)

CHILD = REFUSE + textwrap.dedent(
    """
    setup, face = sys.argv[1], sys.argv[2]
    exec(setup)
    out = {}
    try:
        __import__(face)
        out["error"] = None
    except ImportError as e:
        out["error"] = [type(e).__name__, str(e), getattr(e, "feature", None)]
    # What the message promises: the standard module works here.
    import multiprocessing
    p = multiprocessing.get_context("fork").Process(target=sys.exit, args=(3,))
    p.start()
    p.join(30)
    out["standard_exitcode"] = p.exitcode
    print(json.dumps(out))
    """
)


def run_child(setup: str, face: str = "plait.multiprocessing") -> dict:
    run = run_python("-c", CHILD, setup, face, timeout=60, sys_path=True)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def refused(call: str, errno_: int) -> str:
    machine = platform.machine()
    if machine not in SYSCALLS:
        pytest.skip(f"no syscall table for {machine}")
    arch, numbers = SYSCALLS[machine]
    return f"refuse({arch}, {numbers[call]}, {errno_})"


@pytest.mark.parametrize(
    ("call", "errno_", "why"),
    [
        ("pidfd_open", errno.ENOSYS, "the kernel lacks it"),
        ("pidfd_open", errno.EPERM, "seccomp"),
        ("memfd_create", errno.ENOSYS, "the kernel lacks it"),
    ],
)
def test_a_missing_system_call_is_one_import_error_that_names_it(call, errno_, why):
    out = run_child(refused(call, errno_))
    kind, message, feature = out["error"]
    assert kind == "UnsupportedSystemError" and feature == call
    assert call in message and why in message
    assert "standard modules work here" in message
    if call == "pidfd_open":
        assert "Linux 5.3" in message
    assert out["standard_exitcode"] == 3


def test_another_operating_system_is_named():
    out = run_child("sys.platform = 'darwin'")
    kind, message, feature = out["error"]
    assert kind == "UnsupportedSystemError" and feature == "Linux"
    assert "Linux only (this is darwin)" in message and "standard modules work here" in message


@pytest.mark.parametrize("call", ["pidfd_open", "memfd_create"])
def test_threads_need_neither_pidfds_nor_memfds(call):
    """As under valgrind, which knows no pidfd_open: threads and their queues still work."""
    setup = refused(call, errno.ENOSYS) + textwrap.dedent(
        """
        import plait.queue, plait.threading
        q = plait.queue.Queue()
        t = plait.threading.Thread(target=q.put, args=(42,))
        t.start(); t.join(10)
        assert q.get(timeout=10) == 42
        """
    )
    out = run_child(setup, "plait.threading")
    assert out == {"error": None, "standard_exitcode": 3}


def test_a_system_with_everything_imports_plait():
    assert run_child("pass") == {"error": None, "standard_exitcode": 3}


def test_on_linux_5_3_join_waits_without_waitid_on_a_pidfd():
    """Linux 5.3 has pidfd_open but answers waitid(P_PIDFD) with EINVAL (5.4 brought it)."""
    code = REFUSE + textwrap.dedent(
        f"""
        {refused("waitid", errno.EINVAL)}
        import plait.process
        for method in ("fork", "spawn"):
            p = plait.process.get_context(method).Process(target=sys.exit, args=(5,))
            p.start()
            p.join()
            print(p.exitcode)
        """
    )
    run = run_python("-c", code, timeout=60, sys_path=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["5", "5"]
