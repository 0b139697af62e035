"""The ``fork`` start method: the child is a copy of the parent that runs the target.

Nothing is serialized: the child inherits the ``Process`` object with the rest of the
parent's memory, runs ``Process._bootstrap`` and leaves with ``os._exit`` (no ``atexit``
handlers, no interpreter finalization: those belong to the parent, exactly as in
``multiprocessing``). Before forking the parent flushes ``sys.stdout``/``sys.stderr``, so
buffered output is not printed twice. The cost over a bare ``os.fork`` is one
``pidfd_open`` in the parent and, in a daemon child, four ``fcntl`` calls (``lifeline``).

The usual caveat of ``fork`` holds: only the calling thread exists in the child, so locks
other threads held at that moment stay locked there (Python 3.12+ warns about such a
fork). Use ``spawn`` or ``forkserver`` in programs whose threads hold locks the child
needs. A pool on ``fork`` runs a thread of its own, so it starts its workers through a
``forkserver.ForkHelper``: ``start_child`` hands a ``fork`` start made while this
process runs other threads to the helper the calling thread named in ``through``.
"""

from __future__ import annotations

import _thread
import os

from plait.process import lifeline
from plait.process.child import ChildHandle, DirectChild, flush_std_streams, stdin_from_devnull

# Annotations only: importing typing would cost every child ~10 ms (see spawn).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from plait.process.process import Process

__all__ = ["ForkChild", "start_child", "thread_count", "through"]

# ``through.helper``: the fork helper that this thread's fork starts go through when
# other threads run (set by ``ForkHelper.start_process`` around one start).
through = _thread._local()


def thread_count() -> int:
    """The threads of this process, as the kernel counts them (C libraries' too)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return _thread._count() + 1  # no /proc: the threads Python started, and main
    # "pid (comm) state ppid ...": comm may hold spaces; num_threads is field 20.
    return int(stat[stat.rindex(b")") + 2 :].split()[17])


def start_child(process_obj: Process) -> ChildHandle:
    """Fork ``process_obj``: directly, or by ``through.helper`` if other threads run."""
    helper = getattr(through, "helper", None)
    if helper is not None and thread_count() > 1:
        handle = helper.start(process_obj)
        if handle is not None:
            return handle
    return ForkChild(process_obj)


class ForkChild(DirectChild):
    """Fork the calling process; the child runs ``process_obj`` and exits with its code."""

    method = "fork"

    def __init__(self, process_obj: Process) -> None:
        lifeline_fd = lifeline.reader() if lifeline.wanted(process_obj) else -1
        flush_std_streams()
        try:
            try:
                pid = os.fork()
            except BaseException:
                if lifeline_fd >= 0:
                    lifeline.release()
                raise
            if pid == 0:
                code = 1
                try:
                    if lifeline_fd >= 0:
                        lifeline.arm(lifeline_fd)
                    stdin_from_devnull()
                    code = process_obj._bootstrap()
                finally:
                    os._exit(code)
        finally:
            if lifeline_fd >= 0:
                os.close(lifeline_fd)
        super().__init__(pid, lifeline_fd >= 0)
