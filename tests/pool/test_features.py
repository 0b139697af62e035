"""What users ask for: start methods, lambdas everywhere, progress bars, statistics."""

from __future__ import annotations

import sys

import pytest

import plait.process
from plait.pool import Pool, ThreadPool, WorkerLostError
from tests.pool import tasks


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
@pytest.mark.timeout(60)
def test_every_start_method_runs_lambdas_and_survives_a_kill(method, no_leaks):
    offset = 100
    with Pool(2, context=plait.process.get_context(method)) as pool:
        assert pool.map(lambda x: x + offset, range(5)) == [100, 101, 102, 103, 104]
        with pytest.raises(WorkerLostError):
            pool.apply(tasks.kill_self_on, (1, 1))
        assert pool.starmap(tasks.add, [(1, 2), (3, 4)]) == [3, 7]


@pytest.mark.timeout(60)
def test_a_standard_context_chooses_the_start_method(no_leaks):
    import multiprocessing

    with Pool(1, context=multiprocessing.get_context("spawn")) as pool:
        assert pool.apply(tasks.square, (12,)) == 144


@pytest.mark.timeout(60)
def test_progress_bar_counts_the_tasks(no_leaks, capsys):
    pytest.importorskip("tqdm")
    with Pool(2) as pool:
        assert pool.map(tasks.square, range(50), progress=True) == [x * x for x in range(50)]
        assert list(pool.imap(tasks.square, range(30), progress=True)) == [x * x for x in range(30)]
    err = capsys.readouterr().err
    assert "50/50" in err and "30/30" in err


@pytest.mark.timeout(60)
def test_stats_count_done_failed_and_busy_time(no_leaks):
    with Pool(2) as pool:
        pool.map(tasks.sleep_return, [0.05] * 4, chunksize=1)
        with pytest.raises(ValueError):
            pool.apply(tasks.fail, (1,))
        stats = pool.stats()
        assert stats.tasks_done == 4 and stats.tasks_failed == 1 and stats.in_flight == 0
        assert len(stats.workers) == 2 and stats.workers_replaced == 0
        assert set(stats.busy_seconds) <= set(stats.workers)
        assert sum(stats.busy_seconds.values()) >= 0.2


@pytest.mark.timeout(60)
def test_thread_pool_rejects_a_timeout_and_reports_stats(no_leaks):
    with ThreadPool(2) as pool:
        with pytest.raises(ValueError, match="cannot stop a running thread"):
            pool.apply(tasks.square, (1,), timeout=1)
        assert pool.map(tasks.square, range(10)) == [x * x for x in range(10)]
        assert pool.stats().tasks_done == 10
        pool.close()
        pool.join(10)


@pytest.mark.timeout(60)
def test_imap_input_that_raises_fails_that_position(no_leaks):
    def source():
        yield 1
        yield 2
        raise OSError("input broke")

    with Pool(2) as pool:
        it = pool.imap(tasks.square, source())
        assert next(it) == 1 and next(it) == 4
        with pytest.raises(OSError, match="input broke"):
            next(it)
        with pytest.raises(StopIteration):
            next(it)


@pytest.mark.timeout(60)
def test_big_arrays_travel_both_ways(no_leaks):
    np = pytest.importorskip("numpy")
    arrays = [np.full(1 << 20, i, dtype=np.int64) for i in range(6)]  # 8 MB each
    with Pool(2) as pool:
        out = pool.map(tasks.identity, arrays)
    assert all((a == b).all() for a, b in zip(arrays, out, strict=True))


@pytest.mark.timeout(60)
def test_views_of_a_big_array_are_shared_out_by_their_bytes(no_leaks):
    # Rows of a 2-d array own no memory: their size is their buffer's, not their header's,
    # or the whole map would go to one worker as one message (its function is known cheap).
    np = pytest.importorskip("numpy")
    rows = list(np.zeros((8, 1 << 19), dtype=np.int64))  # 8 views of 4 MB
    with Pool(2) as pool:
        pool.map(tasks.pid, range(100))
        pids = pool.map(tasks.pid, rows)
        assert len(set(pids)) == 2, pids


def test_nbytes_counts_buffers_inside_views_and_tuples():
    np = pytest.importorskip("numpy")
    from plait.pool.worker import nbytes

    row = np.zeros((4, 1 << 17), dtype=np.int64)[1]
    assert nbytes(row) == 1 << 20
    assert nbytes((row, 3)) >= 1 << 20
    assert nbytes(((row,), {})) >= 1 << 20
    assert nbytes(7) == 0


@pytest.mark.timeout(60)
def test_many_threads_submit_and_callbacks_submit_more(no_leaks):
    import threading

    with Pool(2) as pool:
        chained = []

        def resubmit(value):  # runs in the pool's thread; submitting from it is allowed
            if value < 1000:
                chained.append(pool.apply_async(tasks.square, (value + 1000,)))

        def client(base):
            rs = [pool.apply_async(tasks.square, (base + i,), callback=resubmit) for i in range(50)]
            assert [r.get(30) for r in rs] == [(base + i) ** 2 for i in range(50)]
            assert pool.map(tasks.square, range(base, base + 100)) == [
                x * x for x in range(base, base + 100)
            ]

        failures = []

        def guarded(base):
            try:
                client(base)
            except BaseException as exc:  # reported by the test's thread below
                failures.append(exc)

        threads = [threading.Thread(target=guarded, args=(k * 100,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not failures
        assert chained and all(r.get(30) > 0 for r in chained)


@pytest.mark.timeout(60)
def test_a_pool_dropped_without_close_stops_its_workers(no_leaks):
    import gc

    pool = Pool(2)
    assert pool.apply(tasks.square, (3,)) == 9
    del pool
    gc.collect()  # no_leaks then checks that no worker, thread or fd is left


@pytest.mark.timeout(30)
def test_backend_arguments_are_checked(no_leaks):
    with pytest.raises(ValueError, match="need a cluster backend"):
        Pool(1, address="tcp://127.0.0.1:1")
    with pytest.raises(ValueError):
        Pool(1, backend="no-such-backend")


def raise_value_error():
    raise ValueError("initializer says no")


@pytest.mark.timeout(60)
def test_thread_pool_with_a_failing_initializer_fails_tasks_instead_of_hanging():
    with ThreadPool(2, initializer=raise_value_error) as pool:
        with pytest.raises(RuntimeError, match="initializer failed") as info:
            pool.apply_async(abs, (-1,)).get(10)
        assert isinstance(info.value.__cause__, ValueError)
        with pytest.raises(RuntimeError, match="initializer failed"):
            pool.map(abs, range(5))


@pytest.mark.timeout(60)
def test_thread_pool_task_calling_sys_exit_fails_only_that_task():
    with ThreadPool(2) as pool:
        with pytest.raises(SystemExit):
            pool.apply(sys.exit, (3,))
        assert pool.map(abs, [-1, -2]) == [1, 2]
        assert pool.stats().in_flight == 0
