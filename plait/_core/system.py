"""What plait needs from the system, checked once, when the layer that needs it loads.

plait stands on Linux primitives: futexes (the C cores of every layer), pidfds
(``pidfd_open``, Linux 5.3: every child's sentinel, and signals that cannot reach a
recycled pid) and memfds (``memfd_create``, Linux 3.17: shared memory that needs no name
in ``/dev/shm``). Where one is missing (another operating system, an older kernel, or a
seccomp profile, as containers and valgrind have, that refuses the system call) a
failure later, deep inside a start or a C extension, would name nothing useful. So
``plait._core`` calls ``check_platform()`` before any C extension loads, and the
process layer (hence ``plait.multiprocessing``) calls ``check_processes()``, which
makes each system call once on a throw-away object. Either raises one
``UnsupportedSystemError``, an ``ImportError`` that names what is missing and says that
the standard modules work there. Threads and thread queues need only Linux: they still
import where processes cannot run.

Only the answers that mean "not here" count: ``ENOSYS`` (the kernel lacks the call) and
``EPERM``/``EACCES`` (a policy refuses it). Any other error (out of fds, say) is left
to the code that meets it.
"""

from __future__ import annotations

import errno
import os
import sys

__all__ = ["MIN_KERNEL", "UnsupportedSystemError", "check_platform", "check_processes"]

MIN_KERNEL = "5.3"
_STANDARD = (
    "the standard modules work here: import multiprocessing, threading, queue and "
    "concurrent.futures instead of plait's faces"
)


class UnsupportedSystemError(ImportError):
    """This system lacks ``feature``, which plait needs; the message says why."""

    def __init__(self, feature: str, why: str) -> None:
        super().__init__(f"plait cannot run here: {why}; {_STANDARD}")
        self.feature = feature


def _probe_pidfd() -> None:
    os.close(os.pidfd_open(os.getpid()))


def _probe_memfd() -> None:
    os.close(os.memfd_create("plait-check", os.MFD_CLOEXEC))


# The system call, what plait does with it, and the Linux release that brought it.
_PROBES = (
    ("pidfd_open", _probe_pidfd, "the sentinel of every child process", MIN_KERNEL),
    ("memfd_create", _probe_memfd, "shared memory", "3.17"),
)


def check_platform() -> None:
    """Raise ``UnsupportedSystemError`` unless this is Linux."""
    if not sys.platform.startswith("linux"):
        raise UnsupportedSystemError(
            "Linux",
            f"it runs on Linux only (this is {sys.platform}) and stands on futexes, pidfds "
            "and memfds",
        )


def check_processes() -> None:
    """Raise ``UnsupportedSystemError`` unless this system lets plait run processes."""
    for call, probe, use, release in _PROBES:
        try:
            probe()
        except AttributeError:
            why = f"this Python was built without os.{call}"
        except OSError as e:
            if e.errno == errno.ENOSYS:
                why = "the kernel lacks it"
            elif e.errno in (errno.EPERM, errno.EACCES):
                why = "the system refuses it (a seccomp profile or another policy)"
            else:
                continue
            why = f"{why} ({os.strerror(e.errno)})"
        else:
            continue
        raise UnsupportedSystemError(
            call,
            f"the system call {call} (Linux {release} or newer), which plait uses for "
            f"{use}, is not available: {why}",
        )
