"""Workers die (SIGKILL, os._exit, a deadline): only their tasks fail, the rest completes."""

from __future__ import annotations

import collections
import functools
import os
import pickle
import random
import signal
import threading
import time

import pytest

from plait.pool import MaybeEncodingError, Pool, TimeoutError, WorkerLostError
from tests.pool import tasks
from tests.support import outcomes_of, wait_until


@pytest.fixture
def pool(no_leaks):
    with Pool(2) as p:
        yield p


@pytest.mark.timeout(60)
def test_sigkill_in_the_middle_of_map_fails_the_map_and_the_pool_goes_on(pool):
    with pytest.raises(WorkerLostError) as info:
        pool.starmap(tasks.kill_self_on, [(x, 5) for x in range(20)], chunksize=1)
    assert info.value.signal == signal.SIGKILL
    assert info.value.exitcode == -signal.SIGKILL
    assert str(info.value.pid) in str(info.value) and "SIGKILL" in str(info.value)
    assert pool.map(tasks.square, range(10)) == [x * x for x in range(10)]
    assert wait_until(lambda: len(pool.stats().workers) == 2)
    assert pool.stats().workers_replaced == 1


@pytest.mark.timeout(60)
def test_sigkill_during_imap_unordered_fails_only_that_task(pool):
    outcomes = outcomes_of(
        pool.imap_unordered(tasks.kill_self_on_7, range(30), chunksize=1), WorkerLostError
    )
    lost = [o for o in outcomes if isinstance(o, WorkerLostError)]
    assert len(lost) == 1 and lost[0].signal == signal.SIGKILL
    assert sorted(o for o in outcomes if not isinstance(o, WorkerLostError)) == [
        x for x in range(30) if x != 7
    ]


@pytest.mark.timeout(60)
def test_sigkill_from_outside_fails_the_apply_async_it_ran(pool, tmp_path):
    path = str(tmp_path / "pid")
    victim = pool.apply_async(tasks.report_pid_and_sleep, (path, 30))
    others = [pool.apply_async(tasks.square, (x,)) for x in range(10)]
    assert wait_until(lambda: os.path.exists(path) and os.path.getsize(path) > 0)
    with open(path) as f:
        pid = int(f.read())
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerLostError) as info:
        victim.get(30)
    assert info.value.pid == pid and info.value.signal == signal.SIGKILL
    assert [r.get(30) for r in others] == [x * x for x in range(10)]
    assert pid not in pool.stats().workers


@pytest.mark.timeout(60)
def test_a_worker_that_calls_os_exit(pool):
    r = pool.apply_async(tasks.exit_on, (1, 1, 3))
    with pytest.raises(WorkerLostError) as info:
        r.get(30)
    assert info.value.exitcode == 3 and info.value.signal is None
    assert "exited with code 3" in str(info.value)
    assert pool.apply(tasks.square, (5,)) == 25


@pytest.mark.timeout(90)
def test_200_random_kills_in_a_row(no_leaks):
    rng = random.Random(42)
    kills = 0
    with Pool(2) as pool:
        results = [pool.apply_async(tasks.sleep_return, (0.002, i)) for i in range(2000)]

        def killer():
            nonlocal kills
            while kills < 200:
                workers = pool.stats().workers
                if workers:
                    try:
                        os.kill(rng.choice(workers), signal.SIGKILL)
                        kills += 1
                    except ProcessLookupError:
                        pass
                time.sleep(rng.uniform(0, 0.004))

        t = threading.Thread(target=killer)
        t.start()
        t.join(60)
        assert not t.is_alive()
        ok = lost = 0
        for i, r in enumerate(results):
            try:
                assert r.get(60) == i
                ok += 1
            except WorkerLostError:
                lost += 1
        assert ok + lost == 2000
        assert lost <= 200
        assert pool.map(tasks.square, range(5)) == [0, 1, 4, 9, 16]
        assert pool.stats().workers_replaced >= lost


@pytest.mark.timeout(60)
def test_per_task_timeout_kills_and_replaces_the_worker(pool):
    slow = pool.apply_async(tasks.sleep_return, (30, "never"), timeout=0.3)
    fast = [pool.apply_async(tasks.square, (x,), timeout=10) for x in range(5)]
    with pytest.raises(TimeoutError, match="timeout of 0.3 s"):
        slow.get(30)
    assert pool.stats().workers_replaced == 1  # counted before the caller was told
    assert [r.get(30) for r in fast] == [0, 1, 4, 9, 16]
    outcomes = pool.imap(tasks.sleep_return, [0, 0, 30, 0], timeout=0.3)
    assert next(outcomes) is None and next(outcomes) is None
    with pytest.raises(TimeoutError):
        next(outcomes)
    assert next(outcomes) is None
    with pytest.raises(TimeoutError):
        pool.map(tasks.sleep_return, [0, 30], timeout=0.3)
    # Three tasks overran, three workers were killed and replaced.
    assert pool.stats().workers_replaced == 3
    assert wait_until(lambda: len(pool.stats().workers) == 2)


@pytest.mark.timeout(60)
def test_bad_input_gets_a_clear_error_and_the_pool_goes_on(pool):
    with pytest.raises(TypeError, match="must be callable"):
        pool.apply_async(5)
    with pytest.raises(TypeError, match="must be callable"):
        pool.map("not a function", [1])
    with pytest.raises(ValueError, match="non-negative"):
        pool.apply_async(tasks.square, (1,), timeout=-1)
    with pytest.raises(ValueError, match="Chunksize"):
        pool.map(tasks.square, [1], chunksize=0)
    with pytest.raises(pickle.PicklingError):
        pool.apply(tasks.identity, (threading.Lock(),))
    assert pool.apply(tasks.square, (6,)) == 36


@pytest.mark.timeout(60)
def test_lambdas_and_closures_are_tasks(pool):
    offset = 10
    assert pool.map(lambda x: x + offset, range(3)) == [10, 11, 12]
    assert pool.apply(lambda: os.getpid()) in pool.stats().workers


@pytest.mark.timeout(60)
def test_imap_over_an_endless_generator_stays_bounded(pool):
    pulled = 0

    def count():
        nonlocal pulled
        while True:
            pulled += 1
            yield pulled

    threads = set(threading.enumerate())
    for i, value in enumerate(pool.imap(tasks.square, count())):
        assert value == (i + 1) ** 2
        if i == 1000:
            break
    # The iterator is dropped: the thread reading the generator stops and ends.
    assert wait_until(lambda: set(threading.enumerate()) <= threads, 10)
    assert pulled < 200_000
    seen = pulled
    time.sleep(0.1)
    assert pulled == seen  # after the break nothing reads the generator


@pytest.mark.timeout(60)
def test_terminate_fails_pending_results(no_leaks):
    from plait.pool import PoolTerminatedError

    pool = Pool(1)
    running = pool.apply_async(tasks.sleep_return, (30,))
    queued = pool.map_async(tasks.square, range(10))
    pool.terminate()
    for r in (running, queued):
        with pytest.raises(PoolTerminatedError):
            r.get(10)
    pool.join(10)


@pytest.mark.timeout(60)
def test_close_and_join_finish_accepted_work_including_imap(no_leaks):
    pool = Pool(2)
    it = pool.imap(tasks.square, range(100))
    r = pool.map_async(tasks.square, range(100))
    pool.close()
    pool.join(30)
    assert list(it) == [x * x for x in range(100)]
    assert r.get(0) == [x * x for x in range(100)]
    assert pool.stats().workers == ()


@pytest.mark.timeout(60)
def test_answers_that_do_not_unpickle_arrive_as_errors(pool):
    with pytest.raises(Exception, match="1 and 2|NeedsTwoArgs"):
        pool.apply(tasks.raise_needs_two_args)
    with pytest.raises(Exception, match="refuses to be rebuilt"):
        pool.apply(tasks.result_that_breaks_on_load)
    assert pool.map(tasks.square, range(4)) == [0, 1, 4, 9]


@pytest.mark.timeout(60)
def test_sigkill_among_batched_tiny_tasks_fails_the_running_one_and_loses_none(pool, tmp_path):
    # The cost of the function is measured first, so the chunks that follow are sent
    # with ``hold`` and the workers answer in batches: answers are waiting in the
    # worker when it dies.
    log = str(tmp_path / "runs")
    func = functools.partial(tasks.log_and_kill_on, path=log, victim=-1)
    assert pool.map(func, range(200), chunksize=1) == list(range(200))
    os.unlink(log)
    func = functools.partial(tasks.log_and_kill_on, path=log, victim=300)
    outcomes = outcomes_of(pool.imap_unordered(func, range(600), chunksize=1), WorkerLostError)
    lost = [o for o in outcomes if isinstance(o, WorkerLostError)]
    assert len(lost) == 1 and lost[0].signal == signal.SIGKILL
    assert sorted(o for o in outcomes if not isinstance(o, WorkerLostError)) == [
        x for x in range(600) if x != 300
    ]
    with open(log) as f:
        runs = collections.Counter(int(line) for line in f)
    assert set(runs) == set(range(600))
    assert runs[300] == 1  # the task that was running fails; it never runs again


@pytest.mark.timeout(60)
def test_an_answer_in_a_batch_that_does_not_unpickle_fails_only_its_task(pool):
    assert pool.map(tasks.breaks_on_load_at_150, range(100), chunksize=1) == list(range(100))
    outcomes = outcomes_of(
        pool.imap(tasks.breaks_on_load_at_150, range(400), chunksize=1), MaybeEncodingError
    )
    assert outcomes[:150] == list(range(150)) and outcomes[151:] == list(range(151, 400))
    assert isinstance(outcomes[150], MaybeEncodingError)
    assert "refuses to be rebuilt" in str(outcomes[150])


@pytest.mark.timeout(60)
def test_an_initializer_that_always_fails_fails_the_tasks_not_the_caller(no_leaks, capfd):
    with Pool(2, initializer=tasks.broken_initializer) as pool:
        r = pool.apply_async(tasks.square, (3,))
        with pytest.raises(WorkerLostError, match="exited with code 1"):
            r.get(30)
        time.sleep(0.5)
        # replacements back off instead of being forked in a tight loop
        assert pool.stats().workers_replaced < 40
    assert "this initializer always fails" in capfd.readouterr().err
