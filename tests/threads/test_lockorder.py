"""The lock-order checker reports an ABBA pattern that did not deadlock, and costs nothing off."""

import _thread
import os
import sys
import warnings

import pytest

import plait.threading
from plait import threads
from tests.support import run_python


@pytest.fixture
def checking():
    threads.check_lock_order(True)
    yield
    threads.check_lock_order(False)


def run_in_thread(fn, name):
    t = plait.threading.Thread(target=fn, name=name)
    t.start()
    return t.result(timeout=10)


def take_a_then_b(a, b):
    with a:
        with b:
            pass


def take_b_then_a(a, b):
    with b:
        with a:
            pass


@pytest.mark.timeout(20)
def test_abba_without_deadlock_is_reported_with_both_stacks(checking, no_leaks):
    a, b = plait.threading.Lock(), plait.threading.RLock()
    before = len(threads.lock_order_reports())
    run_in_thread(lambda: take_a_then_b(a, b), "first")
    with pytest.warns(threads.LockOrderWarning, match="potential deadlock"):
        # The two threads never overlap, so nothing deadlocks: only the order is wrong.
        run_in_thread(lambda: take_b_then_a(a, b), "second")
    reports = threads.lock_order_reports()[before:]
    assert len(reports) == 1
    report = reports[0]
    assert report.first_thread == "first" and report.closing_thread == "second"
    assert "take_a_then_b" in report.first_stack
    assert "take_b_then_a" in report.closing_stack
    assert report.cycle[0] == report.cycle[-1]


@pytest.mark.timeout(20)
def test_a_cycle_through_three_locks_and_a_condition(checking, no_leaks):
    a, b, c = plait.threading.Lock(), plait.threading.Lock(), plait.threading.Lock()
    cond = plait.threading.Condition(c)
    before = len(threads.lock_order_reports())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", threads.LockOrderWarning)
        run_in_thread(lambda: take_a_then_b(a, b), "ab")
        run_in_thread(lambda: take_a_then_b(b, cond), "bc")
        assert threads.lock_order_reports()[before:] == []
        run_in_thread(lambda: take_a_then_b(cond, a), "ca")
    (report,) = threads.lock_order_reports()[before:]
    assert len(report.cycle) == 4


@pytest.mark.timeout(20)
def test_a_consistent_order_and_reentry_report_nothing(checking, no_leaks):
    a, b = plait.threading.Lock(), plait.threading.RLock()
    before = len(threads.lock_order_reports())
    with warnings.catch_warnings():
        warnings.simplefilter("error", threads.LockOrderWarning)
        for name in ("one", "two"):
            run_in_thread(lambda: take_a_then_b(a, b), name)
        with a, b, b:  # taking b again while holding it orders nothing
            pass
        with b, b:
            pass
    assert threads.lock_order_reports()[before:] == []


@pytest.mark.timeout(20)
def test_a_lock_released_by_another_thread_is_no_longer_held(checking, no_leaks):
    signal, other = plait.threading.Lock(), plait.threading.Lock()
    before = len(threads.lock_order_reports())
    signal.acquire()
    run_in_thread(signal.release, "releaser")  # a plain lock used as a signal
    with warnings.catch_warnings():
        warnings.simplefilter("error", threads.LockOrderWarning)
        with other:
            pass  # were signal still counted as held here, this would order it before other
        run_in_thread(lambda: take_a_then_b(other, signal), "other-then-signal")
    assert threads.lock_order_reports()[before:] == []


def test_checked_locks_keep_lock_semantics(checking):
    lock, rlock = plait.threading.Lock(), plait.threading.RLock()
    assert isinstance(lock, threads.CheckedLock)
    assert lock.acquire() and not lock.acquire(False) and lock.locked()
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()
    with pytest.raises(ValueError):
        lock.acquire(timeout=-2)
    with rlock, rlock:
        assert rlock.locked()
    assert not rlock.locked()
    with pytest.raises(RuntimeError):
        rlock.release()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the C RLock has _recursion_count from 3.11")
def test_checked_locks_reset_after_fork_and_count_levels_as_the_c_ones(checking):
    plain, checked = _thread.RLock(), plait.threading.RLock()
    for rlock in (plain, checked):
        with rlock, rlock:
            assert rlock._recursion_count() == 2
        rlock.acquire()
        rlock._at_fork_reinit()
        assert (rlock._recursion_count(), rlock._is_owned()) == (0, False)
        with rlock:
            assert rlock._recursion_count() == 1
    event = plait.threading.Event()
    event._cond.acquire()
    event._at_fork_reinit()
    assert event._cond.acquire(False)


@pytest.mark.timeout(20)
def test_primitives_built_on_checked_locks_still_work(checking, no_leaks):
    event = plait.threading.Event()
    cond = plait.threading.Condition(plait.threading.Lock())
    rcond = plait.threading.Condition()
    barrier = plait.threading.Barrier(2)
    box = []

    def other():
        barrier.wait(10)
        with cond:
            box.append(1)
            cond.notify()
        with rcond, rcond:
            box.append(2)
            rcond.notify()
        event.set()

    t = plait.threading.Thread(target=other)
    t.start()
    with cond:
        barrier.wait(10)
        assert cond.wait_for(lambda: box, 10)
    with rcond, rcond:
        assert rcond.wait_for(lambda: len(box) == 2, 10)
    assert event.wait(10)
    t.result(10)


def test_off_it_hands_out_the_interpreters_own_locks():
    assert not threads.lock_order_checking()
    assert type(plait.threading.Lock()) is _thread.LockType
    assert type(plait.threading.RLock()) is _thread.RLock


@pytest.mark.timeout(60)
def test_environment_variable_turns_it_on(tmp_path, no_leaks):
    script = tmp_path / "abba.py"
    script.write_text(
        "import plait.threading as t\n"
        "a, b = t.Lock(), t.Lock()\n"
        "with a:\n    with b: pass\n"
        "with b:\n    with a: pass\n"
    )
    root = os.path.dirname(os.path.dirname(plait.threading.__file__))
    env = dict(os.environ, PLAIT_CHECK_LOCKS="1", PYTHONPATH=root)
    proc = run_python(str(script), env=env, timeout=50)
    assert proc.returncode == 0
    assert "LockOrderWarning: potential deadlock" in proc.stderr
