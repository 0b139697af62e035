"""Shared-memory blocks: a sealed ``memfd`` and its mapping, owned by one object.

Theory of operation
-------------------
Every piece of plait's memory that processes share is a ``memfd``: an anonymous file in
RAM with no name in any file system. A ``Block`` creates one (``memfd``), maps it
``MAP_SHARED`` and owns both: the fd is closed when the block is collected (or at once by
``close_fd``, once nothing needs to send it any more), and the mapping is unmapped when
the last object built on it (a ``memoryview``, a ctypes object, a ring of the C cores) is
collected, or by ``close``. No block outlives its users: the kernel frees the memory
when the last process that holds its fd or maps it is gone, also after ``kill -9``, and
nothing is left in ``/dev/shm``.

A block travels by its fd: pickled during a transfer that carries fds (a ``Process``
argument, a message through a plait ``Connection``), it sends the memfd itself
(``fdpass.reduce_fd``); the receiver maps the same memory. A forked child inherits the
fd and the mapping with the object.

Every memfd is sealed against shrinking and growing (``F_SEAL_SHRINK | F_SEAL_GROW |
F_SEAL_SEAL``) as soon as it has its size. A process that maps a file another process
could truncate dies of ``SIGBUS`` when it touches the lost pages, so a block (and a
message's segment, ``segment``) built on an fd it received first checks the seals and the
size (``check``), and refuses anything else. Writing into a sealed memfd stays allowed.

The users: the locks, conditions and events of ``plait.ipc.synchronize`` (one block
each), the rings of process queues and of the manager's local clients, shared ctypes
objects, the heap's arenas, ``SharedMemory`` (a block with a name in its label), and the
segments that carry a message's large buffers (``segment``: one memfd, mapped privately
by the receiver).
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os

from plait._core import fdpass

__all__ = ["Block", "available", "check", "memfd"]

SEALS = (
    fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
    if hasattr(fcntl, "F_SEAL_SHRINK")
    else 0
)


def available() -> bool:
    """Whether this system has sealable ``memfd``s (Linux)."""
    return hasattr(os, "memfd_create") and SEALS != 0


def memfd(name: str, size: int) -> int:
    """A new memfd labelled ``name`` of ``size`` bytes (zeros), sealed; the caller owns it.

    Raises ``OSError`` when the system cannot make it (``ENOMEM``, ``EMFILE``...).
    """
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        if size:
            os.ftruncate(fd, size)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check(fd: int, size: int) -> None:
    """Whether ``fd`` is a memfd sealed against shrinking of at least ``size`` bytes,
    which is safe to map; raises ``OSError`` (``EBADMSG``) naming what it is not."""
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError as exc:  # not a memfd at all (EINVAL)
        raise OSError(errno.EBADMSG, f"the fd is not a memfd: {exc}") from exc
    if not seals & fcntl.F_SEAL_SHRINK:
        raise OSError(errno.EBADMSG, "the memfd is not sealed against shrinking")
    actual = os.fstat(fd).st_size
    if actual < size:
        raise OSError(errno.EBADMSG, f"the memfd holds {actual} bytes, {size} are expected")


class Block:
    """``size`` bytes of memory shared between processes: a sealed memfd mapped shared.

    ``Block(size)`` makes a new one (zeros; ``name`` labels it in ``/proc/PID/fd``);
    ``Block(size, fd)`` maps the memfd ``fd`` that another process made, and owns it from
    then on (refused and closed with ``ValueError`` unless it passes ``check``).
    ``mm`` is the mapping (``mmap.mmap``), ``fd`` the memfd (-1 once closed).
    """

    __slots__ = ("fd", "mm", "size", "__weakref__")

    def __init__(self, size: int, fd: int | None = None, name: str = "plait-block") -> None:
        if fd is None:
            fd = memfd(name, size)
        else:
            try:
                check(fd, size)
            except OSError as exc:
                os.close(fd)
                raise ValueError(
                    f"the fd sent as a {size}-byte memory block is not one: {exc.strerror}"
                ) from exc
        self.fd = fd
        self.size = size
        try:
            self.mm = mmap.mmap(fd, size)
        except BaseException:
            self.fd = -1
            os.close(fd)
            raise

    def __reduce__(self):
        return _rebuild, (fdpass.reduce_fd(self.fd), self.size)

    def close_fd(self) -> None:
        """Close the fd now; the mapping stays, but the block can no longer travel."""
        fd, self.fd = getattr(self, "fd", -1), -1
        if fd >= 0:
            os.close(fd)

    def close(self) -> None:
        """Unmap the memory and close the fd now. Raises ``BufferError``, and leaves the
        block as it was, while objects built on the mapping are alive."""
        self.mm.close()
        self.close_fd()

    __del__ = close_fd


def _rebuild(index: int, size: int) -> Block:
    return Block(size, fdpass.rebuild_fd(index))
