"""max_memory_per_child=: workers over their memory limit are replaced, or killed."""

from __future__ import annotations

import pytest

from plait.futures import ProcessPoolExecutor
from plait.pool import Pool, WorkerLostError
from plait.pool.memory import parse_memory, resident_bytes
from tests.pool import tasks


def _limit() -> int:
    """A limit 64 MiB above a fresh worker's resident set, measured in a fresh worker.

    Not this process's: a forked worker does not count the file pages (the shared
    libraries of ray, say) resident here, so this process can be far above it.
    """
    with Pool(1) as pool:
        return pool.apply(resident_bytes) + (64 << 20)


@pytest.mark.timeout(120)
def test_a_worker_over_its_limit_after_a_task_is_replaced_and_its_result_kept(no_leaks):
    with Pool(1, max_memory_per_child=_limit()) as pool:
        first = pool.apply(tasks.grow_and_return, (8,))
        assert pool.apply(tasks.grow_and_return, (8,)) == first  # still under the limit
        over = pool.apply(tasks.grow_and_return, (120,))  # the result of that task is kept
        assert over == first
        after = pool.map(tasks.pid, range(4))
        assert first not in after  # replaced after that task
        assert pool.stats().workers_replaced == 0  # a retirement, not a loss


@pytest.mark.timeout(120)
def test_a_worker_far_over_its_limit_during_a_task_is_killed(no_leaks):
    limit = _limit()
    with Pool(1, max_memory_per_child=limit) as pool:
        with pytest.raises(WorkerLostError, match="max_memory_per_child") as info:
            pool.apply(tasks.grow_slowly, ((3 * limit) >> 20,), timeout=60)
        assert "resident" in str(info.value) and info.value.reason is not None
        assert pool.apply(tasks.square, (6,)) == 36  # a replacement runs the next task


@pytest.mark.timeout(60)
def test_a_limit_below_a_fresh_worker_is_refused(no_leaks):
    with pytest.raises(ValueError, match=r"below what a fresh worker uses \(.* resident\)"):
        Pool(1, max_memory_per_child="1MB")
    with pytest.raises(ValueError, match="below what a fresh worker uses"):
        ProcessPoolExecutor(1, max_memory_per_child=1 << 20)


def test_sizes_are_read_in_bytes_or_units():
    assert parse_memory(1000) == 1000
    assert parse_memory("2GB") == 2 << 30
    assert parse_memory("1.5 GiB") == 3 << 29
    assert parse_memory("512m") == 512 << 20
    for bad in ("lots", "-1GB", "0"):
        with pytest.raises(ValueError, match="max_memory_per_child"):
            parse_memory(bad)
    with pytest.raises(TypeError):
        parse_memory(1.5)
