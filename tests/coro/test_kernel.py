"""The kernel: tasks, joins, cancellation, generator tasks, crash reports, Ctrl-C."""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import fractions
import gc
import logging
import math
import os
import signal
import threading
import time
import warnings

import pytest

from plait import coro

pytestmark = [pytest.mark.usefixtures("no_leaks", "core"), pytest.mark.timeout(30)]


def test_run_returns_main_result_and_passes_arguments():
    async def main(a, b):
        await coro.sleep(0)
        return a + b

    assert coro.run(main, 2, 3) == 5


def test_run_raises_main_exception():
    async def main():
        await coro.sleep(0.001)
        raise KeyError("lost")

    with pytest.raises(KeyError, match="lost"):
        coro.run(main)


def test_spawn_join_result_exception_cancelled():
    async def child(x):
        await coro.sleep(0.01)
        return x * 2

    async def crash():
        await coro.sleep(0)
        raise ValueError("child failed")

    async def forever():
        await coro.sleep(60)

    async def main():
        t = await coro.spawn(child, 21)
        assert await t.join() == 42
        assert t.result == 42 and t.exception is None and not t.cancelled
        c = await coro.spawn(crash)
        with pytest.raises(ValueError, match="child failed"):
            await c.join()
        assert isinstance(c.exception, ValueError)
        f = await coro.spawn(forever)
        await coro.sleep(0)
        await f.cancel()
        assert f.cancelled and f.terminated
        with pytest.raises(concurrent.futures.CancelledError):
            await f.join()
        return "ok"

    assert coro.run(main) == "ok"


def test_current_task_and_sleep_order():
    order = []

    async def sleeper(n):
        await coro.sleep(n / 100)
        order.append(n)
        return coro.current_task().name

    async def main():
        tasks = [await coro.spawn(sleeper, n) for n in (3, 1, 2)]
        names = [await t.join() for t in tasks]
        assert coro.current_task().name.endswith("main")
        return names

    # on a mock clock: in real time a step delayed 10 ms between two sleepers swaps them
    clock = coro.MockClock(autojump_threshold=0)
    assert coro.run(main, clock=clock) == ["test_current_task_and_sleep_order.<locals>.sleeper"] * 3
    assert order == [1, 2, 3]


def test_a_sleep_longer_than_epoll_can_wait_is_cancelled_normally():
    async def main():
        sleeper = await coro.spawn(coro.sleep, 1e9)
        # the nearest timer is now a billion seconds away: the loop's wait must be bounded
        await coro.run_in_thread(time.sleep, 0.05)
        await sleeper.cancel()
        return sleeper.cancelled

    assert coro.run(main) is True


def test_generator_style_tasks_yield_traps_and_awaitables():
    async def double(x):
        await coro.sleep(0)
        return 2 * x

    def classic(x):
        yield from coro.sleep(0.001)  # a trap, passed straight to the kernel
        y = yield double(x)  # an awaitable, driven for the generator
        return y + 1

    def failing():
        yield from coro.sleep(0)
        try:
            yield double("not a number") if False else _raise()
        except RuntimeError as e:
            return f"caught {e}"

    async def _raise_coro():
        raise RuntimeError("inside")

    def _raise():
        return _raise_coro()

    async def main():
        t = await coro.spawn(classic, 20)
        u = await coro.spawn(failing)
        return await t.join(), await u.join()

    assert coro.run(main) == (41, "caught inside")
    assert coro.run(classic, 1) == 3


def test_cancellation_is_delivered_at_the_next_blocking_point():
    steps = []

    async def worker():
        steps.append("started")
        # no blocking point here: a cancel requested meanwhile must wait
        total = sum(range(1000))
        steps.append(total)
        try:
            await coro.sleep(60)
        except coro.TaskCancelled:
            steps.append("cancelled")
            raise
        finally:
            steps.append("finally")

    async def main():
        t = await coro.spawn(worker)
        await t.cancel(blocking=False)  # before the worker ever ran
        await t.wait()
        return t.cancelled

    # cancelled before its first step: it runs up to its first blocking point (the sleep)
    # and is cancelled there, with its finally block run
    assert coro.run(main) is True
    assert steps == ["started", 499500, "cancelled", "finally"]


def test_cancel_a_task_that_is_running_a_thread_call_goes_on_at_once():
    running, release = threading.Event(), threading.Event()
    released = []

    def call():
        running.set()
        released.append(release.wait(30))  # False: the cancel waited for the thread

    async def main():
        t = await coro.spawn(coro.run_in_thread, call)
        await coro.run_in_thread(running.wait, 30)
        await t.cancel()
        release.set()
        return t.cancelled

    assert coro.run(main) is True
    assert released == [True]


def test_daemon_tasks_are_cancelled_nondaemon_tasks_are_waited_for():
    seen = []

    async def daemon():
        try:
            await coro.sleep(60)
        finally:
            seen.append("daemon finally")

    async def worker():
        await coro.sleep(0.02)
        seen.append("worker done")

    async def main():
        await coro.spawn(daemon, daemon=True)
        await coro.spawn(worker)
        return "main done"

    assert coro.run(main) == "main done"
    assert seen == ["worker done", "daemon finally"]


def test_a_crashed_task_never_joined_is_reported(caplog):
    async def crash():
        raise ZeroDivisionError("nobody listens")

    async def main():
        t = await coro.spawn(crash)
        await coro.sleep(0.01)
        return t  # keep it alive past run(): the report then comes at shutdown

    with caplog.at_level(logging.ERROR, logger="plait.coro"):
        task = coro.run(main)
    del task
    gc.collect()
    reports = [r for r in caplog.records if "never joined" in r.getMessage()]
    assert len(reports) == 1
    assert "ZeroDivisionError" in caplog.text


def test_a_joined_crash_is_not_reported(caplog):
    async def crash():
        raise ZeroDivisionError

    async def main():
        t = await coro.spawn(crash)
        with pytest.raises(ZeroDivisionError):
            await t.join()

    with caplog.at_level(logging.ERROR, logger="plait.coro"):
        coro.run(main)
    gc.collect()
    assert "never joined" not in caplog.text


def test_trap_outside_the_kernel_names_the_cause():
    async def main():
        await coro.sleep(0.01)

    with pytest.raises(coro.NoKernelError, match=r"plait\.coro\.run\(\)"):
        asyncio.run(main())
    with pytest.raises(coro.NoKernelError):
        coro.current_task()


def test_foreign_awaitable_inside_the_kernel_is_a_clear_error():
    async def main():
        await asyncio.sleep(0.01)

    with pytest.raises((TypeError, RuntimeError), match="asyncio|trap|loop"):
        coro.run(main)


def test_run_inside_run_is_refused():
    async def inner():
        return 1

    async def main():
        coro.run(inner)

    with pytest.raises(RuntimeError, match="already runs"):
        coro.run(main)


def test_ctrl_c_cancels_main_and_runs_finally():
    seen = []

    async def main():
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
        try:
            await coro.sleep(10)
        finally:
            seen.append("finally ran")

    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        coro.run(main)
    assert seen == ["finally ran"]
    assert time.monotonic() - t0 < 9  # not the whole sleep (a liveness bound, not timing)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_wait_for_a_signal_inside_a_coroutine():
    async def main():
        async with coro.SignalQueue(signal.SIGUSR1, signal.SIGUSR2) as signals:
            os.kill(os.getpid(), signal.SIGUSR2)
            first = await signals.get()
            threading.Timer(0.02, os.kill, (os.getpid(), signal.SIGUSR1)).start()
            second = await signals.get()
        return first, second

    before = signal.getsignal(signal.SIGUSR1)
    assert coro.run(main) == (signal.SIGUSR2, signal.SIGUSR1)
    assert signal.getsignal(signal.SIGUSR1) is before


def test_ps_lists_tasks_state_and_where_they_wait():
    async def waiter(ev):
        await ev.wait()

    async def main():
        ev = coro.Event()
        t = await coro.spawn(waiter, ev)
        await coro.sleep(0)
        rows = {info.id: info for info in coro.ps()}
        table = coro.format_ps()
        ev.set()
        await t.join()
        return rows[t.id], rows[coro.current_task().id], table

    waiting, me, table = coro.run(main)
    assert waiting.state == "EVENT_WAIT"
    assert "test_kernel.py" in waiting.where and "waiter" in waiting.where
    assert me.state == "RUNNING"
    assert "EVENT_WAIT" in table


def test_slow_step_warning_is_opt_in():
    async def hog():
        time.sleep(0.05)  # blocks the kernel: exactly what the warning is for
        await coro.sleep(0)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coro.run(hog)
        assert not [w for w in caught if issubclass(w.category, coro.SlowStepWarning)]
        coro.run(hog, slow_step=0.01)
    slow = [w for w in caught if issubclass(w.category, coro.SlowStepWarning)]
    assert slow and "hog" in str(slow[0].message)


def test_ctrl_c_while_run_waits_for_non_daemon_tasks_cancels_them():
    async def straggler():
        await coro.sleep(30)

    async def main():
        await coro.spawn(straggler)
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
        return "main done"

    with pytest.raises(KeyboardInterrupt):
        coro.run(main)


def test_spawn_of_something_that_is_not_a_task_names_it():
    async def main():
        with pytest.raises(TypeError, match="42"):
            await coro.spawn(42)
        with pytest.raises(TypeError, match="neither a coroutine nor a generator"):
            await coro.spawn(lambda: 7)
        return "ok"

    assert coro.run(main) == "ok"


def test_kernel_statistics_and_cleanup():
    from plait.coro import traps

    async def main():
        await coro.sleep(0)
        return traps.kernel().statistics()

    stats = coro.run(main)
    assert stats["tasks"] == 1 and stats["fds_registered"] == 0


def test_system_exit_in_a_task_stops_the_kernel_and_comes_out_of_run():
    cleaned = []

    async def quitter():
        await coro.sleep(0.01)
        raise SystemExit(3)

    async def main():
        await coro.spawn(quitter)
        try:
            await coro.sleep(30)
        finally:
            cleaned.append("main finally")

    with pytest.raises(SystemExit) as info:
        coro.run(main)
    assert info.value.code == 3
    assert cleaned == ["main finally"]


@pytest.mark.parametrize(
    "seconds, error, match",
    [
        (math.nan, ValueError, "got nan"),
        ("1", TypeError, "got '1'"),
        (None, TypeError, "got None"),
    ],
)
def test_sleep_refuses_what_is_not_a_number_of_seconds_in_the_calling_task(seconds, error, match):
    # as time.sleep does; the kernel and its other tasks go on
    async def other():
        await coro.sleep(0.01)
        return "other done"

    async def main():
        t = await coro.spawn(other)
        with pytest.raises(error, match=match):
            await coro.sleep(seconds)
        await coro.sleep(fractions.Fraction(1, 100))  # a real number that is not a float
        return await t.join()

    assert coro.run(main) == "other done"


def test_an_exception_raised_by_a_signal_handler_while_the_kernel_waits_winds_it_down():
    # pytest-timeout's SIGALRM handler raises so: the tasks' finally blocks still run
    # inside the kernel, run() raises that exception, and the kernel's fds are closed
    class Alarm(BaseException):
        pass

    def on_alarm(signo, frame):
        raise Alarm("from the handler")

    finished = []

    async def worker():
        try:
            await coro.Event().wait()
        finally:
            await coro.sleep(0)  # a finally block that awaits, as closing a stream does
            finished.append("worker")

    async def main():
        await coro.spawn(worker)
        try:
            await coro.sleep(30)
        finally:
            await coro.sleep(0)
            finished.append("main")

    fds = len(os.listdir("/proc/self/fd"))
    old = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(Alarm, match="from the handler") as info:
            coro.run(main)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert info.value.__context__ is None
    assert sorted(finished) == ["main", "worker"]
    assert len(os.listdir("/proc/self/fd")) == fds


def test_a_lock_or_event_shared_by_two_kernels_is_refused_by_name():
    # two threads, two kernels, one plait Event: the second kernel must not run (or
    # queue) the first kernel's task; UniversalEvent is the object for that
    ev = coro.Event()
    lock = coro.Lock()
    parked, done = threading.Event(), threading.Event()
    seen = {}

    async def first():
        waiter = await coro.spawn(ev.wait)
        await lock.acquire()
        blocked = await coro.spawn(lock.acquire)
        await coro.sleep(0)  # both wait now
        seen["task"] = waiter
        parked.set()
        await coro.run_in_thread(done.wait, 30)
        await waiter.cancel()
        await blocked.cancel()
        lock.release()

    thread = threading.Thread(target=coro.run, args=(first,))
    thread.start()
    try:
        assert parked.wait(30)

        async def second():
            errors = []
            for attempt in (ev.set, lock.acquire, seen["task"].join, seen["task"].cancel):
                try:
                    outcome = attempt()
                    if outcome is not None:
                        await outcome
                except RuntimeError as e:
                    errors.append(str(e))
            return errors

        errors = coro.run(second)
    finally:
        done.set()
        thread.join(30)
    assert len(errors) == 4
    assert all("another plait kernel" in e for e in errors), errors
    assert "UniversalEvent" in errors[0]


def test_a_wait_on_a_closed_or_bad_fd_is_the_task_s_error_not_the_kernel_s():
    # -1 (a closed socket's fileno) and a fd number nothing has open: the waiting task
    # gets the error, the kernel keeps no entry for it, and the other tasks go on
    from plait.coro import traps

    r = 9999  # a fd number nothing has open
    with pytest.raises(OSError):
        os.fstat(r)

    async def other():
        await coro.sleep(0.01)
        return "other done"

    async def main():
        t = await coro.spawn(other)
        owner = object()
        with pytest.raises(coro.ClosedResourceError, match="is closed"):
            await traps.read_wait(-1, owner)
        with pytest.raises(OSError) as info:
            await traps.read_wait(r, owner)
        assert info.value.errno == errno.EBADF
        assert -1 not in traps.kernel()._fds and r not in traps.kernel()._fds
        return await t.join()

    assert coro.run(main) == "other done"


@pytest.mark.parametrize(
    "max_threads, error", [(0, ValueError), (-5, ValueError), (2.5, TypeError), ("x", TypeError)]
)
def test_max_threads_is_checked_when_the_kernel_is_made(max_threads, error):
    async def main():
        pass

    with pytest.raises(error, match="max_threads"):
        coro.run(main, max_threads=max_threads)


def test_a_deadlock_is_reported_instead_of_hanging():
    cleaned = []

    async def consumer(q):
        try:
            await q.get()  # nobody will ever put
        finally:
            cleaned.append("consumer finally")

    async def main():
        q = coro.Queue()
        t = await coro.spawn(consumer, q)
        await t.join()

    with pytest.raises(coro.DeadlockError, match=r"main\) TASK_JOIN.*consumer\) QUEUE_GET"):
        coro.run(main)
    assert cleaned == ["consumer finally"]


def test_a_deadlock_of_the_tasks_left_after_main_returned_is_reported_too():
    # run() waits for them; once they hang, run() raises rather than hand back main's result
    cleaned = []

    async def waiter():
        try:
            await coro.Event().wait()
        finally:
            cleaned.append("waiter finally")

    async def main():
        await coro.spawn(waiter)
        return "main's result"

    with pytest.raises(coro.DeadlockError, match=r"waiter\) EVENT_WAIT"):
        coro.run(main)
    assert cleaned == ["waiter finally"]


def test_waiting_for_a_thread_or_a_timer_is_not_a_deadlock():
    async def main():
        ev = coro.Event()

        async def setter():
            await coro.run_in_thread(time.sleep, 0.05)
            ev.set()

        await coro.spawn(setter)
        await ev.wait()
        ev2 = coro.Event()

        async def later():
            await coro.sleep(0.02)
            ev2.set()

        await coro.spawn(later)
        await ev2.wait()
        return "no deadlock"

    assert coro.run(main) == "no deadlock"


def test_a_failing_run_step_puts_the_tasks_it_took_ahead_back_in_order(core):
    """The C run step takes the next two tasks off the ready deque a step early (to
    prefetch them); when the step fails they go back to its front, in order."""
    from collections import deque

    from plait.coro.task import Task

    if core != "c":
        pytest.skip("the C run step only")
    from plait._core import _coro

    async def done():
        return 1

    tasks = [Task(done(), f"t{i}", False) for i in range(5)]
    ready = deque(tasks)
    finished = []

    class Kernel:
        current = None

    def finish(task, value, exc):
        finished.append(task)
        if task is tasks[1]:
            raise RuntimeError("the kernel's finish failed")

    def unexpected(*args):
        raise AssertionError(f"not expected here: {args}")

    with pytest.raises(RuntimeError, match="finish failed"):
        _coro.run_ready(Kernel(), ready.popleft, len(ready), {}, -1, finish, unexpected, unexpected)
    assert finished == tasks[:2]
    assert list(ready) == tasks[2:]
    for task in ready:
        task.coro.close()
