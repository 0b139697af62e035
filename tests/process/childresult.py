"""Run a function in a child process of any start method and bring back what it returned.

``run_in_child(fn, *args, method="spawn")`` starts a plait ``Process`` whose target
calls ``fn`` and pickles ``("ok", value)`` or ``("err", exception)`` into a temporary
file (a file works under every start method: nothing has to be inherited), joins it
with a timeout, and returns the value or re-raises the exception. A child that dies
without writing raises ``ChildDied`` carrying its exit code.
"""

from __future__ import annotations

import os
import tempfile

import plait.process
from plait._core import serialization

__all__ = ["ChildDied", "run_in_child"]


class ChildDied(RuntimeError):
    """The child ended without reporting a result."""

    def __init__(self, exitcode: int | None) -> None:
        super().__init__(f"child ended with exit code {exitcode} and no result")
        self.exitcode = exitcode


def _report(path: str, fn, args, kwargs) -> None:
    try:
        outcome = ("ok", fn(*args, **kwargs))
    except Exception as exc:  # the test wants to see it
        outcome = ("err", exc)
    with open(path, "wb") as f:
        f.write(serialization.dumps(outcome))


def run_in_child(fn, *args, method: str = "fork", timeout: float = 30.0, **kwargs):
    """Call ``fn(*args, **kwargs)`` in a child started with ``method``; return its result."""
    fd, path = tempfile.mkstemp(prefix="plait-test-")
    os.close(fd)
    try:
        ctx = plait.process.get_context(method)
        p = ctx.Process(target=_report, args=(path, fn, args, kwargs))
        p.start()
        p.join(timeout)
        if p.exitcode is None:
            p.kill()
            p.join(5)
            raise TimeoutError(f"child {p.pid} still running after {timeout} s")
        exitcode = p.exitcode
        p.close()
        with open(path, "rb") as f:
            data = f.read()
        if not data:
            raise ChildDied(exitcode)
        kind, value = serialization.loads(data)
        if kind == "err":
            raise value
        return value
    finally:
        os.unlink(path)
