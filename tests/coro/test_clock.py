"""MockClock: sleeps and timeouts on a test's time; jumps by hand, by rate and by autojump;
real I/O and threads beside it; the clock refused outside the kernel it drives."""

from __future__ import annotations

import math
import socket
import threading
import time

import pytest

from plait import coro

pytestmark = [pytest.mark.usefixtures("no_leaks"), pytest.mark.timeout(30)]


def test_autojump_makes_an_hour_of_timeouts_pass_at_once_in_order():
    woke = []

    async def sleeper(seconds):
        await coro.sleep(seconds)
        woke.append((seconds, coro.clock()))

    async def main():
        async with coro.TaskGroup() as group:
            for seconds in (3600, 60, 600, 1):
                await group.spawn(sleeper, seconds)
        with pytest.raises(coro.TaskTimeout):
            async with coro.timeout_after(60):
                await coro.Event().wait()
        async with coro.ignore_after(30) as scope:
            await coro.Queue().get()
        return coro.clock(), scope.expired

    clock = coro.MockClock(autojump_threshold=0)
    assert coro.run(main, clock=clock) == (3690.0, True)
    assert woke == [(1, 1.0), (60, 60.0), (600, 600.0), (3600, 3600.0)]
    assert clock.current_time() == 3690.0


def test_a_stopped_clock_moves_only_when_a_task_jumps_it():
    clock = coro.MockClock(start=100)

    async def main():
        sleeper = await coro.spawn(coro.sleep, 10)
        await coro.sleep(0)
        clock.jump(4)
        for _ in range(3):
            await coro.sleep(0)
        assert not sleeper.terminated and coro.clock() == 104.0
        clock.jump(6)
        await sleeper.join()
        return coro.clock()

    assert coro.run(main, clock=clock) == 110.0


def test_a_fast_rate_runs_time_faster_and_can_stop():
    clock = coro.MockClock(rate=1000)

    async def main():
        start = coro.clock()
        await coro.sleep(5)  # five ms of real time
        slept = coro.clock() - start
        clock.rate = 0
        stopped_at = coro.clock()
        await coro.run_in_thread(time.sleep, 0.01)
        return slept, coro.clock() == stopped_at

    slept, stood_still = coro.run(main, clock=clock)
    assert slept >= 5 and stood_still


def test_sockets_and_threads_keep_real_time_beside_autojump():
    """A peer that answers within the threshold is heard before any jump; silence longer
    than the threshold lets the 60 s timeout fire in clock time."""
    left, right = socket.socketpair()

    async def main():
        sock = coro.Socket(left)
        try:
            threading.Timer(0.05, right.send, (b"ping",)).start()
            async with coro.timeout_after(60):
                data = await sock.recv(10)
            async with coro.timeout_after(60):
                await coro.run_in_thread(time.sleep, 0.05)
            answered_at = coro.clock()
            with pytest.raises(coro.TaskTimeout):
                async with coro.timeout_after(60):
                    await sock.recv(10)
            return data, answered_at, coro.clock()
        finally:
            await sock.close()

    try:
        result = coro.run(main, clock=coro.MockClock(autojump_threshold=1.0))
    finally:
        right.close()
    assert result == (b"ping", 0.0, 60.0)


def test_tasks_talking_over_a_socket_are_not_jumped_past():
    """With threshold 0 the clock still sees the kernel's own traffic: a readable socket
    is something to do, so the timeout scopes around the exchange do not fire."""

    async def echo(sock):
        while data := await sock.recv(100):
            await sock.sendall(data)

    async def main():
        a, b = socket.socketpair()
        server, client = coro.Socket(a), coro.Socket(b)
        task = await coro.spawn(echo, server)
        for n in range(20):
            async with coro.timeout_after(1):
                await client.sendall(b"x" * n)
                got = b""
                while len(got) < n:
                    got += await client.recv(100)
        await client.close()
        await task.join()
        await server.close()
        return coro.clock()

    assert coro.run(main, clock=coro.MockClock(autojump_threshold=0)) == 0.0


def test_a_clock_serves_kernels_one_after_the_other():
    clock = coro.MockClock(autojump_threshold=0)

    async def main():
        await coro.sleep(7)
        return coro.clock()

    assert coro.run(main, clock=clock) == 7.0
    assert coro.run(main, clock=clock) == 14.0
    clock.autojump_threshold = math.inf  # no kernel runs on it: any thread may set it up
    assert clock.autojump_threshold == math.inf


def test_kernel_time_and_clock_outside_a_kernel():
    before = time.monotonic()
    assert coro.clock() >= before  # no kernel in this thread: the monotonic clock

    async def main():
        return coro.clock(), coro.current_task() is not None

    assert coro.run(main, clock=coro.MockClock(start=-5)) == (-5.0, True)


# -- bad input: a clock used outside the kernel it drives --------------------------------


def test_jump_on_a_clock_no_kernel_runs_on_is_refused():
    clock = coro.MockClock()
    with pytest.raises(coro.MockClockError, match="no kernel runs on this clock"):
        clock.jump(1)
    assert clock.current_time() == 0.0


def test_jump_from_another_thread_is_refused_and_the_kernel_goes_on():
    clock = coro.MockClock(autojump_threshold=0)

    async def main():
        with pytest.raises(coro.MockClockError, match="called from thread .* drives the kernel"):
            await coro.run_in_thread(clock.jump, 10)
        with pytest.raises(coro.MockClockError, match="called from thread"):
            await coro.run_in_thread(setattr, clock, "rate", 1.0)
        assert coro.clock() == 0.0
        await coro.sleep(3)
        return coro.clock(), clock.rate

    assert coro.run(main, clock=clock) == (3.0, 0.0)


def test_a_clock_given_to_a_second_kernel_is_refused_and_the_first_goes_on():
    clock = coro.MockClock(autojump_threshold=0)
    running, release = threading.Event(), threading.Event()
    results = []

    async def first():
        running.set()
        await coro.run_in_thread(release.wait, 10)
        await coro.sleep(5)
        return coro.clock()

    async def second():
        await coro.sleep(1)

    thread = threading.Thread(target=lambda: results.append(coro.run(first, clock=clock)))
    thread.start()
    try:
        assert running.wait(10)
        with pytest.raises(coro.MockClockError, match="already drives the kernel of thread"):
            coro.run(second, clock=clock)
    finally:
        release.set()
        thread.join(10)
    assert results == [5.0]


def test_a_stopped_clock_nobody_can_jump_is_a_deadlock_not_a_hang():
    async def main():
        await coro.sleep(1)

    with pytest.raises(coro.DeadlockError, match="stopped MockClock"):
        coro.run(main, clock=coro.MockClock())


def test_a_socket_read_earlier_does_not_hide_a_deadlock_on_a_stopped_clock():
    # the socket's epoll registration outlives the read, but no task waits for it
    a, b = socket.socketpair()

    async def main():
        sa, sb = coro.Socket(a), coro.Socket(b)
        reader = await coro.spawn(sa.recv, 10)
        await coro.sleep(0)  # the reader waits: its fd is registered
        await sb.sendall(b"x")
        assert await reader.join() == b"x"
        await coro.sleep(1)  # nobody can jump the clock

    try:
        with pytest.raises(coro.DeadlockError, match="stopped MockClock"):
            coro.run(main, clock=coro.MockClock())
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("start", [math.inf, -math.inf, math.nan])
def test_a_clock_must_start_at_a_finite_time(start):
    with pytest.raises(ValueError, match="start must be a finite number of seconds"):
        coro.MockClock(start=start)


def test_autojump_skips_the_timer_of_a_scope_left_early():
    async def main():
        async with coro.timeout_after(60):
            pass  # left at once: its timer stays in the heap, stale
        async with coro.timeout_after(3600):
            await coro.sleep(0)  # the same, one more stale timer
        before = coro.clock()
        await coro.run_in_thread(time.sleep, 0.05)  # idle with no live timer
        after_thread = coro.clock()
        await coro.sleep(5)
        return before, after_thread, coro.clock()

    assert coro.run(main, clock=coro.MockClock(autojump_threshold=0)) == (0.0, 0.0, 5.0)


def test_autojump_never_jumps_to_an_infinite_deadline():
    async def main():
        async with coro.timeout_after(math.inf):  # "no limit"
            await coro.run_in_thread(time.sleep, 0.05)
        return coro.clock()

    assert coro.run(main, clock=coro.MockClock(autojump_threshold=0)) == 0.0


def test_an_infinite_sleep_on_an_autojump_clock_is_a_deadlock_not_a_jump():
    async def main():
        await coro.sleep(math.inf)

    with pytest.raises(coro.DeadlockError, match=r"never expire \(math.inf\)"):
        coro.run(main, clock=coro.MockClock(autojump_threshold=0))


@pytest.mark.parametrize(
    "make",
    [
        lambda: coro.MockClock(rate=-1),
        lambda: coro.MockClock(rate=math.inf),
        lambda: coro.MockClock(autojump_threshold=math.nan),
        lambda: coro.MockClock(autojump_threshold=10**9),
        lambda: coro.MockClock(start="0"),
        lambda: coro.MockClock().jump(-1),
        lambda: coro.Kernel(clock=time.monotonic),
    ],
    ids=[
        "negative rate",
        "infinite rate",
        "nan threshold",
        "huge threshold",
        "str start",
        "backwards jump",
        "not a MockClock",
    ],
)
def test_bad_settings_name_the_setting(make):
    with pytest.raises((ValueError, TypeError), match="rate|threshold|start|jump|MockClock"):
        make()


def test_a_kernel_that_cannot_start_main_frees_its_clock():
    clock = coro.MockClock(autojump_threshold=0)
    with pytest.raises(TypeError):
        coro.run(42, clock=clock)

    async def main():
        await coro.sleep(2)
        return coro.clock()

    assert coro.run(main, clock=clock) == 2.0
