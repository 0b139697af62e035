"""Child handles: what a started ``Process`` holds on to, one class per kind of parenthood.

``DirectChild`` is a child this process created itself (``fork`` and ``spawn``). Its
sentinel is a *pidfd* (``os.pidfd_open``, Linux 5.3+): it becomes readable when the
child has ended, it can be passed to ``select``/``poll``/``wait`` like any fd, it does not
depend on pipes the child might pass on to its own children (a grandchild holding the
write end of a sentinel pipe keeps such a sentinel silent), and signals go through it
(``pidfd_send_signal``), so a recycled pid can never receive our SIGTERM.

Reaping: ``poll`` calls ``waitpid(pid, WNOHANG)`` under a lock, so two threads that join
the same child cannot both reap it (the loser would get ``ECHILD`` and lose the status).
Blocking waits never reap while they block: ``wait(None)`` sleeps in
``waitid(P_PIDFD, WNOWAIT)``, ``wait(timeout)`` in ``poll`` on the pidfd, and both then
reap through ``poll``, which keeps ``is_alive`` in other threads responsive. If something
else reaped the child (a program that calls ``os.wait()`` or sets SIGCHLD to SIG_IGN),
the status is lost: the exit code becomes ``lost_exitcode``, 255 by default as
``multiprocessing`` reports a child it cannot account for (``subprocess`` says 0), instead
of ``join`` waiting forever. A child reaped that way before its pidfd could be opened
cannot be watched at all: ``DirectChild`` raises ``ProcessLookupError`` and signals
nothing, as its pid may already belong to another process.

Two chores every start method does around a fork live here too: ``flush_std_streams``
(before ``fork`` and ``os._exit``) and ``stdin_from_devnull`` (in a forked child).
"""

from __future__ import annotations

import _signal  # the C module under signal, which would import enum (~4 ms in a child)
import _thread
import errno
import math
import os
import select
import sys

from plait.process import lifeline

__all__ = [
    "UNKNOWN_EXITCODE",
    "ChildHandle",
    "DirectChild",
    "flush_std_streams",
    "kill_and_reap",
    "stdin_from_devnull",
    "wait_readable",
]

_POLLIN = select.POLLIN | select.POLLHUP | select.POLLERR
UNKNOWN_EXITCODE = 255


def wait_readable(fd: int, timeout: float | None) -> bool:
    """Block until ``fd`` is readable or ``timeout`` seconds pass (``None``: no limit).

    A negative timeout does not wait. Returns whether the fd is readable.
    """
    poller = select.poll()
    poller.register(fd, _POLLIN)
    if timeout is None:
        ms = None
    else:
        ms = max(0, math.ceil(timeout * 1000))
    return bool(poller.poll(ms))


class ChildHandle:
    """What every child handle shares: the signals and the sentinel's lifetime.

    A subclass sets ``sentinel`` (an fd) once its start succeeded and implements
    ``send_signal``, which must not signal a child that has ended.
    """

    sentinel = -1  # until the start succeeded

    def send_signal(self, signum: int) -> None:
        raise NotImplementedError

    def interrupt(self) -> None:
        """SIGINT, unless the child has ended; does not wait."""
        self.send_signal(_signal.SIGINT)

    def terminate(self) -> None:
        """SIGTERM, unless the child has ended; does not wait."""
        self.send_signal(_signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL, unless the child has ended; does not wait."""
        self.send_signal(_signal.SIGKILL)

    def close(self) -> None:
        """Close the sentinel."""
        if self.sentinel >= 0:
            os.close(self.sentinel)
            self.sentinel = -1

    def __del__(self, _close=os.close) -> None:
        if self.sentinel >= 0:
            _close(self.sentinel)


class DirectChild(ChildHandle):
    """A child of this process: its pid, a pidfd as sentinel, and its exit code once reaped."""

    def __init__(
        self, pid: int, holds_lifeline: bool, lost_exitcode: int = UNKNOWN_EXITCODE
    ) -> None:
        """Take charge of the child ``pid``, just created by this process.

        ``lost_exitcode`` is the exit code reported if something else reaps the child
        (see the module notes). Raises ``OSError`` (with the errno of ``pidfd_open``, e.g.
        ``EMFILE`` when this process is out of fds) if no pidfd can be opened: the child
        is then SIGKILLed and reaped before the error propagates, so a failed start leaves
        no zombie and no orphan behind. ``ProcessLookupError`` (``ESRCH``) means the child
        has ended and was reaped already, its status lost; its pid is not signalled then,
        as another process may have it now.
        """
        self.pid = pid
        self.returncode: int | None = None
        try:
            self.sentinel = os.pidfd_open(pid)
        except OSError as e:
            if e.errno != errno.ESRCH:
                kill_and_reap(pid)
            if holds_lifeline:
                lifeline.release()
            if e.errno == errno.ESRCH:
                raise ProcessLookupError(
                    e.errno,
                    f"cannot watch child {pid}: it has ended and something else reaped it "
                    "(SIGCHLD ignored, or an os.wait() elsewhere), so its exit status is lost",
                ) from e
            raise OSError(
                e.errno,
                f"cannot watch child {pid}: pidfd_open failed ({e.strerror}); "
                "the child was killed and reaped",
            ) from e
        self._lock = _thread.allocate_lock()
        self._holds_lifeline = holds_lifeline
        self._lost_exitcode = lost_exitcode

    def poll(self) -> int | None:
        """The exit code if the child has ended (reaping it), else ``None``; never blocks."""
        if self.returncode is None:
            with self._lock:
                if self.returncode is None:
                    self._reap()
        return self.returncode

    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            if self.sentinel >= 0 and wait_readable(self.sentinel, 0):
                self.returncode = self._lost_exitcode
            pid = 0
        if pid:
            self.returncode = os.waitstatus_to_exitcode(status)
        if self.returncode is not None and self._holds_lifeline:
            self._holds_lifeline = False
            lifeline.release()

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the child ends or ``timeout`` passes; return the exit code or ``None``."""
        if self.returncode is None:
            if timeout is None:
                # Wait for the exit without reaping (WNOWAIT): poll() reaps under the lock.
                try:
                    os.waitid(os.P_PIDFD, self.sentinel, os.WEXITED | os.WNOWAIT)
                except ChildProcessError:
                    pass  # another thread reaped it: poll() reports what it found
                except OSError as e:
                    if e.errno != errno.EINVAL:
                        raise
                    # Linux 5.3 has pidfds but not waitid(P_PIDFD) (5.4): poll the pidfd.
                    wait_readable(self.sentinel, None)
            elif not wait_readable(self.sentinel, timeout):
                return None
        return self.poll()

    def send_signal(self, signum: int) -> None:
        """Signal the child unless it has ended; never reaches a recycled pid."""
        if self.returncode is None:
            try:
                _signal.pidfd_send_signal(self.sentinel, signum)
            except ProcessLookupError:
                pass


def kill_and_reap(pid: int) -> None:
    """SIGKILL and reap a child of ours that we cannot watch. Blocks until it is gone:
    a SIGKILLed process ends without running any code of its own. The pid cannot have
    been recycled: nobody reaped the child yet (unless the program reaps behind our back,
    with ``os.wait()`` or SIGCHLD ignored; then there is nothing left to do)."""
    try:
        os.kill(pid, _signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def stdin_from_devnull() -> None:
    """Make the child's stdin read from /dev/null, so it never reads its parent's input.

    ``multiprocessing`` closes ``sys.stdin`` and opens a new one; building a new text
    stream is dear for a forked child, so when ``sys.stdin`` is the usual stream on
    fd 0 we only redirect the fd under it. A replaced ``sys.stdin`` (a test runner's, an
    ``io.StringIO``) is closed and replaced, as ``multiprocessing`` does. Spawned
    children get /dev/null on fd 0 from ``posix_spawn``.
    """
    fd = os.open(os.devnull, os.O_RDONLY)
    if fd != 0:
        os.dup2(fd, 0)
        os.close(fd)
    stdin = sys.stdin
    if stdin is None or stdin is sys.__stdin__:
        return  # the interpreter's own stream on fd 0: it now reads /dev/null
    try:
        stdin.close()
    except (OSError, ValueError):
        pass
    sys.stdin = open(0, encoding="utf-8", closefd=False)


def flush_std_streams() -> None:
    """Flush ``sys.stdout`` and ``sys.stderr`` (before fork and before ``os._exit``)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError):
            pass
