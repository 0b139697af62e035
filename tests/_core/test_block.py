"""Shared-memory blocks: one memfd and its mapping, shared by every process that gets it."""

from __future__ import annotations

import os

import pytest

from plait._core.block import Block, check, memfd
from tests.support import run_in_child

pytestmark = pytest.mark.timeout(60)


def _write_through(block: Block, data: bytes) -> int:
    block.mm[: len(data)] = data
    return block.size


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_block_given_to_a_child_is_the_same_memory(method, no_leaks):
    block = Block(4096, name="plait-test-block")
    assert run_in_child(_write_through, block, b"from the child", method=method) == 4096
    assert block.mm[:14] == b"from the child"
    block.close()
    assert block.fd == -1


def test_close_refuses_while_a_view_lives_and_leaves_the_block_whole(no_leaks):
    block = Block(64)
    view = memoryview(block.mm)
    with pytest.raises(BufferError):
        block.close()
    os.fstat(block.fd)  # the fd is still open: the block can still travel
    view[0] = 1
    view.release()
    block.close()
    assert block.fd == -1


def test_only_a_sealed_memfd_of_the_size_is_taken(no_leaks):
    fd = memfd("plait-test-small", 16)
    with pytest.raises(ValueError, match="holds 16 bytes, 32 are expected"):
        Block(32, fd)
    with pytest.raises(OSError):
        os.fstat(fd)  # refused and closed
    unsealed = os.memfd_create("plait-test-unsealed")
    os.ftruncate(unsealed, 64)
    with pytest.raises(OSError, match="not sealed"):
        check(unsealed, 64)
    os.close(unsealed)
