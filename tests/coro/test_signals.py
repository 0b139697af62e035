"""Signals in tasks: SignalQueue and wait_signal, alone and overlapping.

Each scenario runs in a forked child: a handler left wrong would otherwise stay in the
test process, and a signal meant for a queue could end it.
"""

from __future__ import annotations

import os
import signal

import pytest

from plait import coro
from plait.coro import traps
from tests.support import run_in_child

pytestmark = [pytest.mark.usefixtures("no_leaks"), pytest.mark.timeout(60)]

USR1 = signal.SIGUSR1


def watcher_counts() -> dict[int, int]:
    """How many queues watch each signal, as the kernel sees it."""
    return {signo: len(queues) for signo, queues in traps.kernel().signal_watchers.items()}


async def watch_until_cancelled(entered: coro.Event, received: list) -> None:
    async with coro.SignalQueue(USR1) as queue:
        entered.set()
        received.append(await queue.get())


async def two_watchers(received: list) -> tuple[coro.Task, coro.Task]:
    """Two tasks that watch SIGUSR1, both inside their queues when this returns."""
    tasks = []
    for _ in range(2):
        entered = coro.Event()
        tasks.append(await coro.spawn(watch_until_cancelled, entered, received))
        async with coro.timeout_after(10):
            await entered.wait()
    return tasks[0], tasks[1]


def first_leaves_then_the_signal_comes():
    received = []

    async def main():
        first, second = await two_watchers(received)
        await first.cancel()
        os.kill(os.getpid(), USR1)  # the second still waits for it
        async with coro.timeout_after(10):
            await second.join()

    before = signal.getsignal(USR1)
    coro.run(main)
    return received, signal.getsignal(USR1) == before


def test_a_signal_reaches_the_queue_left_waiting_when_an_earlier_one_leaves():
    received, restored = run_in_child(first_leaves_then_the_signal_comes)
    assert received == [USR1]
    assert restored


def both_leave_in_the_order_they_came():
    async def main():
        first, second = await two_watchers([])
        await first.cancel()
        await second.cancel()

    before = signal.getsignal(USR1)
    coro.run(main)
    return signal.getsignal(USR1) == before


def test_queues_that_leave_in_the_order_they_came_restore_the_handler():
    assert run_in_child(both_leave_in_the_order_they_came)


def cannot_watch_sigkill():
    async def main():
        with pytest.raises(OSError):
            async with coro.SignalQueue(USR1, signal.SIGKILL):
                pass
        return watcher_counts(), signal.getsignal(USR1) == before

    before = signal.getsignal(USR1)
    watchers, untouched = coro.run(main)
    return watchers, untouched, signal.getsignal(USR1) == before


def test_a_queue_that_cannot_watch_one_of_its_signals_holds_none():
    watchers, untouched_inside, untouched_after = run_in_child(cannot_watch_sigkill)
    assert watchers == {}
    assert untouched_inside and untouched_after


def deadlock_after_a_failed_queue():
    async def main():
        with pytest.raises(OSError):
            async with coro.SignalQueue(USR1, signal.SIGKILL):
                pass
        await coro.Event().wait()  # nothing can set it

    with pytest.raises(coro.DeadlockError):
        coro.run(main)
    return "deadlock seen"


def test_a_queue_that_failed_to_open_does_not_hide_a_deadlock():
    # a watcher left behind would keep the kernel waiting for a signal, forever
    assert run_in_child(deadlock_after_a_failed_queue, timeout=15) == "deadlock seen"


def same_signal_named_twice():
    async def main():
        async with coro.SignalQueue(USR1, USR1) as queue:
            os.kill(os.getpid(), USR1)
            async with coro.timeout_after(10):
                got = await queue.get()
            pending = repr(queue)
        return got, pending, watcher_counts()

    before = signal.getsignal(USR1)
    got, pending, watchers = coro.run(main)
    return got, pending, watchers, signal.getsignal(USR1) == before


def test_a_signal_named_twice_is_watched_once():
    got, pending, watchers, restored = run_in_child(same_signal_named_twice)
    assert got == USR1
    assert pending == "<SignalQueue SIGUSR1, 0 pending>"
    assert watchers == {}
    assert restored
