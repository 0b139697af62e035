"""Lifelines: daemon children die with their parent, however the parent dies.

The problem
-----------
``multiprocessing`` terminates daemon children from an ``atexit`` hook, so a parent that
is SIGKILLed, crashes, or calls ``os._exit`` leaves them running. The usual repair,
``prctl(PR_SET_PDEATHSIG)``, is tied to the *thread* that created the child: a child
started from a short-lived worker thread is killed when that thread ends, long before the
parent exits. We do not use it.

The design
----------
Each process that starts daemon children owns one pipe, its *lifeline*. The parent holds
the only write end (close-on-exec, closed in forked children by an ``at_fork`` hook) and
never writes to it: the write end is closed exactly when the parent is gone, whatever the
cause, because the kernel closes the fds of a dead process.

Every daemon child gets its own *open file description* of the read end (``reader()``
opens ``/proc/self/fd/N`` anew; a plain ``dup`` would share the description, and the
owner set below is per description, so siblings would overwrite each other). In the
child, ``arm()`` asks the kernel for signal-driven I/O on it: ``O_ASYNC`` with
``F_SETOWN`` = the child and ``F_SETSIG`` = SIGKILL. When the last write end closes, the
pipe becomes readable (EOF) and the kernel delivers SIGKILL to the child at once. No
thread, no polling, nothing to run in the parent, and a daemon child's own daemon
children follow it down the same way.

A process may also tie every child, daemon or not (``tie_every_child``): a pool's worker
does, so the processes and pools its tasks start die with it too.

The pipe exists only while the parent has daemon children that have not been reaped:
``reader()`` counts them in, ``release()`` (called when a daemon child's exit status is
collected, or its start failed) counts them out and closes the pipe at zero, so a
program that started daemons long ago holds no fds for them now.

A parent that exits normally still terminates its daemon children with SIGTERM first
(the ``atexit`` hook in ``process``), as ``multiprocessing`` does, so they can clean up;
the lifeline is the backstop. Nothing else can keep a lifeline open by accident: the
write end is close-on-exec, and the at-fork hook closes it in any forked process, whether
plait or user code called ``os.fork``. The read end is close-on-exec too: a daemon child
that replaces itself with ``os.exec*`` gives up its lifeline.
"""

from __future__ import annotations

import _signal  # the C module under signal, which would import enum (~4 ms in a child)
import _thread
import fcntl
import os

__all__ = ["reader", "release", "arm", "wanted"]

_lock = _thread.allocate_lock()
_pipe: tuple[int, int] | None = None
_holders = 0  # daemon children started and not yet reaped
# Set by a process whose every child must die with it, daemon or not (a pool worker:
# the processes its tasks start); a forked child starts with it unset.
tie_every_child = False


def wanted(process_obj) -> bool:
    """Whether the child ``process_obj`` gets a lifeline: a daemon, or any child of a
    process that ties every child (``tie_every_child``)."""
    return bool(process_obj.daemon) or tie_every_child


def reader() -> int:
    """Open a fresh read description of the lifeline for one more daemon child.

    The caller owns the returned fd (it closes it once the child has it) and must call
    ``release()`` once that child has been reaped or failed to start.
    """
    global _pipe, _holders
    with _lock:
        if _pipe is None:
            _pipe = os.pipe()
        fd = os.open(f"/proc/self/fd/{_pipe[0]}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        _holders += 1
        return fd


def release() -> None:
    """One daemon child less; close the lifeline when none is left."""
    global _pipe, _holders
    with _lock:
        _holders -= 1
        if _holders == 0 and _pipe is not None:
            for fd in _pipe:
                os.close(fd)
            _pipe = None


def arm(fd: int) -> None:
    """In a daemon child: be SIGKILLed when the parent's write end closes.

    Kills the calling process at once if the parent is already gone.
    """
    fcntl.fcntl(fd, fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(fd, fcntl.F_SETSIG, _signal.SIGKILL)
    fcntl.fcntl(fd, fcntl.F_SETFL, os.O_RDONLY | os.O_NONBLOCK | os.O_ASYNC)
    os.set_inheritable(fd, False)
    try:
        if os.read(fd, 1) == b"":
            os.kill(os.getpid(), _signal.SIGKILL)
    except BlockingIOError:
        pass  # the parent holds the write end: it is alive


def _forget_in_child() -> None:
    """After ``fork``: the child must not hold its parent's lifeline (nor reuse it)."""
    global _pipe, _holders, _lock, tie_every_child
    _lock = _thread.allocate_lock()
    _holders = 0
    tie_every_child = False
    if _pipe is not None:
        for fd in _pipe:
            os.close(fd)
        _pipe = None


os.register_at_fork(after_in_child=_forget_in_child)
