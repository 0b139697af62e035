"""Shared-memory segments: a message's large buffers in an anonymous ``memfd``.

Theory of operation
-------------------
Copying 8 MB through a socket costs two copies (into the kernel, out of it) and hundreds
of system calls; a segment costs one copy and a handful. The sender creates a ``memfd``
(an anonymous file in RAM), ``pwrite``s each buffer into it at an aligned offset, seals
its size, and passes the fd over a Unix socket (``SCM_RIGHTS``, see ``fdpass``). The
receiver maps it ``MAP_PRIVATE`` and builds its objects on slices of the mapping: no copy
at all, the pages are the sender's pages until someone writes to them (copy on write,
so the receiver gets writable buffers, as with a socket, and cannot disturb the sender).

No segment outlives its users: a ``memfd`` has no name in any file system; its memory
is freed when the last fd and the last mapping are gone. The sender closes its fd once
the message is sent; the receiver closes the fd right after mapping it, and the mapping
is unmapped when the last object built on it is collected. A process killed at any
point drops its fds and mappings with it. A message still in flight holds the fd in the
socket's queue, and that is freed with the socket.

The receiver trusts nothing it gets: it checks that the segment is sealed against
shrinking (a peer that truncates a mapped file would make us die of ``SIGBUS``) and that
it is as large as the header announced.

Layout: buffer ``i`` starts at ``offsets[i]``, each offset rounded up to ``ALIGN`` bytes
(a cache line), so that numpy arrays built on them are aligned for every dtype.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Sequence

from plait._core import block

__all__ = ["ALIGN", "available", "layout", "create", "map_views"]

ALIGN = 64
available = block.available


def layout(lengths: Sequence[int]) -> tuple[list[int], int]:
    """Offsets of buffers of ``lengths`` in a segment, and the segment's size."""
    offsets = []
    end = 0
    for n in lengths:
        start = (end + ALIGN - 1) & -ALIGN
        offsets.append(start)
        end = start + n
    return offsets, end


def create(parts: Sequence[memoryview], name: str = "plait") -> int:
    """A sealed ``memfd`` holding ``parts`` at the offsets of ``layout``; the caller owns it.

    Raises ``OSError`` when the system cannot allocate it (``ENOMEM``, ``EMFILE``...).
    """
    offsets, size = layout([p.nbytes for p in parts])
    fd = block.memfd(name, size)
    try:
        pwrite = os.pwrite
        for part, offset in zip(parts, offsets, strict=True):
            done = 0
            size = part.nbytes
            while done < size:
                done += pwrite(fd, part[done:] if done else part, offset + done)
    except BaseException:
        os.close(fd)
        raise
    return fd


def map_views(fd: int, lengths: Sequence[int]) -> list[memoryview]:
    """Map the segment ``fd`` privately; return writable views of its buffers.

    Does not close ``fd``. Raises ``OSError`` (``EBADMSG``) when the segment is not a
    memfd sealed against shrinking or is smaller than ``lengths`` need (``block.check``).
    """
    offsets, size = layout(lengths)
    block.check(fd, size)
    if size == 0:
        return [memoryview(b"") for _ in lengths]
    whole = memoryview(mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE))
    return [whole[o : o + n] for o, n in zip(offsets, lengths, strict=True)]
