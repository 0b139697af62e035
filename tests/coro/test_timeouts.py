"""Timeout scopes: nesting (the nearest deadline wins), ignore_after, stale timers."""

from __future__ import annotations

import pickle

import pytest

from plait import coro

pytestmark = [pytest.mark.usefixtures("no_leaks"), pytest.mark.timeout(30)]


def test_inner_deadline_first_raises_inner_timeout_outer_continues():
    async def main():
        async with coro.timeout_after(5) as outer:
            try:
                async with coro.timeout_after(0.02) as inner:
                    await coro.sleep(5)
            except coro.TaskTimeout as e:
                assert e.seconds == 0.02
                assert inner.expired and not outer.expired
            await coro.sleep(0.001)  # the outer scope is still alive and well
        return "outer finished"

    assert coro.run(main) == "outer finished"


def test_outer_deadline_first_passes_through_the_inner_scope():
    async def main():
        try:
            async with coro.timeout_after(0.02) as outer:
                async with coro.timeout_after(5) as inner:
                    await coro.sleep(5)
        except coro.TaskTimeout as e:
            return e.seconds, outer.expired, inner.expired

    assert coro.run(main) == (0.02, True, False)


def test_timeout_is_a_timeout_error_and_ignore_after_swallows():
    async def main():
        with pytest.raises(TimeoutError):
            async with coro.timeout_after(0.01):
                await coro.Event().wait()
        async with coro.ignore_after(0.01) as scope:
            await coro.Queue().get()
        assert scope.expired
        async with coro.ignore_after(5) as quick:
            await coro.sleep(0)
        assert not quick.expired
        return "ok"

    assert coro.run(main) == "ok"


def test_nested_ignore_inside_timeout():
    async def main():
        async with coro.timeout_after(5):
            async with coro.ignore_after(0.01) as scope:
                await coro.sleep(5)
        return scope.expired

    assert coro.run(main) is True


def test_an_expired_scope_left_without_blocking_does_not_leak_its_cancel():
    """The deadline passes while the task computes; the scope ends before any await."""
    import time

    async def main():
        async with coro.timeout_after(0.01):
            time.sleep(0.03)  # no blocking point inside the scope
        await coro.sleep(0.001)  # must not receive the stale expiry
        return "survived"

    assert coro.run(main) == "survived"


def test_many_short_scopes_keep_the_timer_heap_small():
    async def main():
        for _ in range(5000):
            async with coro.timeout_after(60):
                await coro.sleep(0)
        from plait.coro import traps

        return len(traps.kernel()._timers)

    assert coro.run(main) < 200


def test_bad_timeout_value_names_it():
    async def main():
        async with coro.timeout_after(None):
            pass

    with pytest.raises(ValueError, match="seconds"):
        coro.run(main)


def test_heap_rebuild_keeps_sleepers_and_live_scopes():
    """Stale timers are dropped when they pile up; live sleeps and scopes must survive.

    On a mock clock that jumps only when the kernel idles: the sleeps and the scope are
    still live when the loop ends, however long a loaded machine takes over it."""

    async def sleeper(n, woke):
        await coro.sleep(0.05 + n / 1000)
        woke.append(n)

    async def main():
        woke = []
        sleepers = [await coro.spawn(sleeper, n, woke) for n in range(20)]
        try:
            async with coro.timeout_after(0.2):
                for _ in range(3000):  # each leaves a stale timer behind
                    async with coro.timeout_after(60):
                        await coro.sleep(0)
                await coro.sleep(5)
        except coro.TaskTimeout:
            pass
        for t in sleepers:
            await t.join()
        return sorted(woke)

    assert coro.run(main, clock=coro.MockClock(autojump_threshold=0)) == list(range(20))


def test_of_two_nested_timeouts_that_pass_together_the_outer_one_is_not_lost():
    # both deadlines pass while the task runs: the inner scope must not take the
    # expiry, catch it and let the block run on past the outer deadline (asyncio's
    # timeouts give the outer one too)
    clock = coro.MockClock()

    async def main():
        log = []
        try:
            async with coro.timeout_after(10):
                try:
                    async with coro.timeout_after(5):
                        clock.jump(20)  # both timers fire before the task waits again
                        await coro.sleep(0)
                except coro.TaskTimeout:
                    log.append("inner")
                await coro.sleep(100)
                log.append("the outer block ran on")
        except coro.TaskTimeout:
            log.append("outer")
        return log

    assert coro.run(main, clock=clock) == ["outer"]


def test_ignore_after_expired_says_whether_the_block_was_cut_short():
    # a deadline that passes after the block's last wait, before it ends, cuts nothing
    # short; a scope used again starts afresh
    clock = coro.MockClock(autojump_threshold=0)

    async def main():
        scope = coro.ignore_after(1)
        q = coro.Queue()

        async def hand_over():
            await coro.sleep(0)
            q.put_nowait("item")  # the block's task is ready with it...
            clock.jump(2)  # ...when the timer fires: the block ends without waiting again

        await coro.spawn(hand_over)
        async with scope:
            got = await q.get()
        assert got == "item"
        finished = scope.expired
        async with scope:
            await coro.sleep(0)
        again = scope.expired
        async with scope:
            await coro.sleep(5)  # cut short
        return finished, again, scope.expired

    assert coro.run(main, clock=clock) == (False, False, True)


@pytest.mark.parametrize(
    "error",
    [
        coro.TaskTimeout(1.5),
        coro.ClosedResourceError("<plait.coro.Socket fd=7>"),
        coro.IncompleteRead(b"ab", 5),
    ],
    ids=lambda e: type(e).__name__,
)
def test_plait_coro_errors_cross_a_process_boundary(error):
    # a run_in_process worker or a pool task may raise them: pickled there, read here
    again = pickle.loads(pickle.dumps(error))
    assert (type(again), again.args, str(again), vars(again)) == (
        type(error),
        error.args,
        str(error),
        vars(error),
    )
