"""``SharedMemoryManager``: shared memory blocks that live until the manager shuts down.

Theory of operation
-------------------
plait's blocks (``plait.ipc.shared_memory``) are memfds: a block lives while some
process holds it, and its name lets others attach while it does. The manager's server
is the holder of last resort: ``smm.SharedMemory(size)`` and ``smm.ShareableList(seq)``
make the block in the calling process, as the standard library does, then ask the
server to *track* it (``track_segment``), and the server attaches it, so the block
outlives its creator's ``close()`` (and its creator). When the server stops
(``shutdown()``, the ``with`` block's end, the parent's death), it *unlinks* every
block it tracks, then drops its hold: later attaches by name raise
``FileNotFoundError``, processes that have a block keep using it until they close it,
and the kernel frees the memory with its last holder. A server killed outright
(SIGKILL) unlinks nothing, but drops its hold all the same: a block stays attachable
while some process holds it, and goes with the last. Nothing is ever left in
``/dev/shm``.

``release_segment`` unlinks one block early; ``list_segments`` names those tracked. A
block a user unlinked is let go at the next of these requests (or of ``track_segment``),
so that its memory goes with its last user, not with the server.
They are requests of the server itself (``dispatch(conn, None, 'list_segments')``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from plait.ipc.shared_memory import ShareableList, SharedMemory
from plait.managers.manager import BaseManager, State
from plait.managers.proxy import client_for
from plait.managers.server import Server

__all__ = ["SharedMemoryManager", "SharedMemoryServer", "HAS_SHMEM"]

HAS_SHMEM = True  # as the standard module's flag: this platform has shared memory


class SharedMemoryServer(Server):
    """A ``Server`` that also holds shared memory blocks and unlinks them when it stops."""

    public = Server.public + ["track_segment", "release_segment", "list_segments"]

    def __init__(self, *args: Any, **kwds: Any) -> None:
        super().__init__(*args, **kwds)
        self._segments: dict[str, SharedMemory] = {}
        self._segments_lock = threading.Lock()

    def track_segment(self, session: Any, segment_name: str) -> None:
        """Hold the block ``segment_name`` until the server stops (``FileNotFoundError``
        if no process holds it)."""
        block = SharedMemory(segment_name)
        with self._segments_lock:
            old = self._segments.pop(segment_name, None)
            self._segments[segment_name] = block
        if old is not None:
            old.close()
        self._let_go_of_unlinked()

    def release_segment(self, session: Any, segment_name: str) -> None:
        """Unlink the block ``segment_name`` and stop holding it (nothing if not tracked)."""
        with self._segments_lock:
            block = self._segments.pop(segment_name, None)
        if block is not None:
            _destroy(block)
        self._let_go_of_unlinked()

    def list_segments(self, session: Any) -> list[str]:
        """The names of the blocks this server holds."""
        self._let_go_of_unlinked()
        with self._segments_lock:
            return list(self._segments)

    def _let_go_of_unlinked(self) -> None:
        """Stop holding the blocks a user unlinked (``shm.unlink()``, the standard idiom
        when done): the server's hold would keep their memory until it stops. Looked at
        whenever a block is tracked, released or listed."""
        with self._segments_lock:
            gone = [name for name, block in self._segments.items() if block._is_unlinked()]
            blocks = [self._segments.pop(name) for name in gone]
        for block in blocks:
            block.close()

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            with self._segments_lock:
                blocks, self._segments = list(self._segments.values()), {}
            for block in blocks:
                _destroy(block)


def _destroy(block: SharedMemory) -> None:
    try:
        block.unlink()
    except FileNotFoundError:
        pass  # its owner unlinked it already
    block.close()


class SharedMemoryManager(BaseManager):
    """A manager whose server holds shared memory blocks until it shuts down.

    ``SharedMemoryManager(address=None, authkey=None, ...)`` as ``BaseManager``.

    >>> with SharedMemoryManager() as smm:
    ...     sl = smm.ShareableList(range(5))  # another process attaches by sl.shm.name
    ...     sum(sl)
    10
    """

    _Server = SharedMemoryServer

    def _check_running(self) -> None:
        if self._state.value != State.STARTED:
            raise ValueError(
                "the SharedMemoryManager is not started (or shut down): start() it first"
            )

    def _track(self, block: SharedMemory) -> None:
        try:
            client = client_for(self._address, self._authkey, self._serializer)
            client.call(None, "track_segment", (block.name,), {})
        except BaseException:
            block.unlink()
            raise

    def SharedMemory(self, size: int) -> SharedMemory:  # noqa: N802 - the standard name
        """A new block of ``size`` bytes, held by the server until it shuts down.

        Blocks for one round trip. Raises ``ValueError`` if the manager is not started.
        """
        self._check_running()
        block = SharedMemory(None, create=True, size=size)
        self._track(block)
        return block

    def ShareableList(self, sequence: Iterable[Any] | None) -> ShareableList:  # noqa: N802
        """A new ``ShareableList`` of ``sequence``, held by the server until it shuts down.

        Blocks for one round trip. Raises ``ValueError`` if the manager is not started.
        """
        self._check_running()
        items = ShareableList(sequence)
        self._track(items.shm)
        return items
