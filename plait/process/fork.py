"""The ``fork`` start method: the child is a copy of the parent that runs the target.

Nothing is serialized: the child inherits the ``Process`` object with the rest of the
parent's memory, runs ``Process._bootstrap`` and leaves with ``os._exit`` (no ``atexit``
handlers, no interpreter finalization: those belong to the parent, exactly as in
``multiprocessing``). Before forking the parent flushes ``sys.stdout``/``sys.stderr``, so
buffered output is not printed twice. The cost over a bare ``os.fork`` is one
``pidfd_open`` in the parent and, in a daemon child, four ``fcntl`` calls (``lifeline``).

The usual caveat of ``fork`` holds: only the calling thread exists in the child, so locks
other threads held at that moment stay locked there. Use ``spawn`` or ``forkserver``
in programs whose threads hold locks the child needs.
"""

from __future__ import annotations

import os

from plait.process import lifeline
from plait.process.child import DirectChild
from plait.process.process import Process, flush_std_streams, stdin_from_devnull

__all__ = ["ForkChild"]


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
