"""A heap of shared memory: many small blocks carved out of a few shared arenas.

Theory of operation
-------------------
``multiprocessing.heap`` gives ``BufferWrapper(size)``: ``size`` bytes of memory that
every process which gets the wrapper (a forked child, or one it is pickled to) sees, for
small shared objects that should not each cost a mapping and an fd. plait's own shared
objects (``sharedctypes``, the locks) do take a ``memfd`` each; this module is the
standard API for programs that use the heap directly.

An ``Arena`` is a sealed ``memfd`` mapped ``MAP_SHARED`` (the ``Block`` of
``plait._core.block``): it pickles by sending its fd (``fdpass``), a forked child inherits it,
and the kernel frees it with its last user, also after ``kill -9``: nothing is left in
``/dev/shm`` or in a temporary directory.

A ``Heap`` hands out blocks ``(arena, start, stop)``. Its bookkeeping, under one lock:

- ``_lengths`` (sorted) and ``_len_to_seq`` (length -> free blocks of that length):
  ``malloc`` takes the smallest free block that fits (best fit), splits off the rest as
  a new free block, or maps a new arena when none fits; arenas double in size up to
  ``_DOUBLE_ARENA_SIZE_UNTIL``, and a request larger than that gets an arena of its own
  size (rounded to pages);
- ``_start_to_block`` and ``_stop_to_block`` (both keyed ``(arena, offset)``): freeing
  a block merges it with the free blocks that touch it on either side, so free space
  is never fragmented into neighbours;
- ``_allocated_blocks`` (arena -> ``{(start, stop)}``): an arena with nothing allocated
  whose size is over ``_DISCARD_FREE_SPACE_LARGER_THAN`` is unmapped as soon as its last
  block is freed.

Invariant: the free blocks and the allocated blocks of an arena cover it exactly,
without overlap; ``_n_mallocs - _n_frees`` blocks are allocated.

A ``BufferWrapper`` frees its block when it is collected. Collection may run in the
middle of a ``malloc`` in the same thread (the garbage collector runs anywhere), so
``free`` never waits for the lock: when it cannot take it at once, it leaves the block
in ``_pending_free_blocks``, which the next ``malloc`` or ``free`` drains. A forked child
starts a heap of its own on first use (blocks it inherited stay valid and are never
freed by it), as the standard library's does.
"""

from __future__ import annotations

import bisect
import mmap
import os
import sys
import threading
import weakref
from collections import defaultdict

from plait._core.block import Block

__all__ = ["Arena", "BufferWrapper", "Heap"]


class Arena:
    """``size`` bytes of shared memory (a sealed ``memfd``, mapped shared) that a
    ``Heap`` carves blocks from. ``buffer`` is the mapping; pickling sends the fd (a
    ``Process`` argument, a plait ``Connection``)."""

    def __init__(self, size: int, fd: int = -1) -> None:
        self._block = Block(size, None if fd < 0 else fd, "plait-heap")
        self.size = size
        self.fd = self._block.fd
        self.buffer = self._block.mm

    def __reduce__(self):
        return _rebuild_arena, (self._block,)

    def __repr__(self) -> str:
        return f"<plait.ipc.heap.Arena size={self.size} fd={self.fd}>"


def _rebuild_arena(block: Block) -> Arena:
    arena = Arena.__new__(Arena)
    arena._block = block
    arena.size = block.size
    arena.fd = block.fd
    arena.buffer = block.mm
    return arena


class Heap:
    """Blocks of shared memory from arenas (see the module): ``malloc(size)`` returns a
    block ``(arena, start, stop)``, ``free(block)`` gives it back. Thread-safe."""

    _alignment = 8
    _DISCARD_FREE_SPACE_LARGER_THAN = 4 * 1024**2
    _DOUBLE_ARENA_SIZE_UNTIL = 4 * 1024**2

    def __init__(self, size: int = mmap.PAGESIZE) -> None:
        self._lastpid = os.getpid()
        self._lock = threading.Lock()
        self._size = size  # the next arena's size
        self._lengths: list[int] = []
        self._len_to_seq: dict[int, list[tuple]] = {}
        self._start_to_block: dict[tuple, tuple] = {}
        self._stop_to_block: dict[tuple, tuple] = {}
        self._allocated_blocks: defaultdict[Arena, set[tuple[int, int]]] = defaultdict(set)
        self._arenas: list[Arena] = []
        self._pending_free_blocks: list[tuple] = []
        self._n_mallocs = 0
        self._n_frees = 0

    @staticmethod
    def _roundup(n: int, alignment: int) -> int:
        return (n + alignment - 1) & ~(alignment - 1)

    def malloc(self, size: int) -> tuple:
        """A free block of at least ``size`` bytes: ``(arena, start, stop)``.

        Raises ``ValueError`` for a negative size, ``OverflowError`` past
        ``sys.maxsize``, ``OSError`` when no memory can be mapped.
        """
        if size < 0:
            raise ValueError(f"Size {size} out of range")
        if size >= sys.maxsize:
            raise OverflowError(f"Size {size} too large")
        if os.getpid() != self._lastpid:
            self.__init__()  # a forked child: a heap of its own (see the module)
        with self._lock:
            self._n_mallocs += 1
            self._free_pending_blocks()
            size = self._roundup(max(size, 1), self._alignment)
            arena, start, stop = self._take(size)
            if start + size < stop:
                self._add_free_block((arena, start + size, stop))
            self._allocated_blocks[arena].add((start, start + size))
            return arena, start, start + size

    def free(self, block: tuple) -> None:
        """Give ``block`` back. Never blocks: called while this thread is inside the heap
        (by the garbage collector), it leaves the block for the next call to free."""
        if os.getpid() != self._lastpid:
            return  # a block of the parent's heap: not ours to free
        if not self._lock.acquire(False):
            self._pending_free_blocks.append(block)
            return
        try:
            self._free_pending_blocks()
            self._free(block)
        finally:
            self._lock.release()

    # -- under the lock ---------------------------------------------------------------

    def _take(self, size: int) -> tuple:
        """Remove and return the smallest free block of at least ``size`` bytes."""
        i = bisect.bisect_left(self._lengths, size)
        if i == len(self._lengths):
            return self._new_arena(size)
        length = self._lengths[i]
        seq = self._len_to_seq[length]
        block = seq.pop()
        if not seq:
            del self._len_to_seq[length], self._lengths[i]
        arena, start, stop = block
        del self._start_to_block[(arena, start)]
        del self._stop_to_block[(arena, stop)]
        return block

    def _new_arena(self, size: int) -> tuple:
        length = self._roundup(max(self._size, size), mmap.PAGESIZE)
        if self._size < self._DOUBLE_ARENA_SIZE_UNTIL:
            self._size *= 2
        arena = Arena(length)
        self._arenas.append(arena)
        return arena, 0, length

    def _add_free_block(self, block: tuple) -> None:
        arena, start, stop = block
        length = stop - start
        seq = self._len_to_seq.get(length)
        if seq is None:
            self._len_to_seq[length] = seq = []
            bisect.insort(self._lengths, length)
        seq.append(block)
        self._start_to_block[(arena, start)] = block
        self._stop_to_block[(arena, stop)] = block

    def _remove_free_block(self, block: tuple) -> None:
        arena, start, stop = block
        length = stop - start
        seq = self._len_to_seq[length]
        seq.remove(block)
        if not seq:
            del self._len_to_seq[length]
            self._lengths.remove(length)
        del self._start_to_block[(arena, start)]
        del self._stop_to_block[(arena, stop)]

    def _free(self, block: tuple) -> None:
        self._n_frees += 1
        arena, start, stop = block
        allocated = self._allocated_blocks[arena]
        allocated.remove((start, stop))
        before = self._stop_to_block.get((arena, start))
        if before is not None:
            self._remove_free_block(before)
            start = before[1]
        after = self._start_to_block.get((arena, stop))
        if after is not None:
            self._remove_free_block(after)
            stop = after[2]
        if not allocated:
            del self._allocated_blocks[arena]
            if arena.size > self._DISCARD_FREE_SPACE_LARGER_THAN:
                self._arenas.remove(arena)  # the whole arena is free: unmap it
                return
        self._add_free_block((arena, start, stop))

    def _free_pending_blocks(self) -> None:
        pending = self._pending_free_blocks
        while pending:
            self._free(pending.pop())


class BufferWrapper:
    """``size`` bytes of the shared heap, freed when the wrapper is collected.

    ``create_memoryview()`` is a writable view of exactly those bytes. The wrapper
    pickles with its arena (a ``Process`` argument, a plait ``Connection``); a copy in
    another process sees the same memory and frees nothing.
    """

    _heap = Heap()

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"Size {size} out of range")
        heap = BufferWrapper._heap
        block = heap.malloc(size)
        self._state = (block, size)
        weakref.finalize(self, heap.free, block)

    def create_memoryview(self) -> memoryview:
        """A writable view of the block's ``size`` bytes."""
        (arena, start, _), size = self._state
        return memoryview(arena.buffer)[start : start + size]
