"""Task groups: a crash cancels the others and propagates; no task outlives its group."""

from __future__ import annotations

import pytest

from plait import coro

pytestmark = [pytest.mark.usefixtures("no_leaks"), pytest.mark.timeout(30)]


def test_group_waits_for_all_tasks():
    async def child(n):
        await coro.sleep(n / 1000)
        return n

    async def main():
        async with coro.TaskGroup() as g:
            for n in range(10):
                await g.spawn(child, n)
        return [t.result for t in g.tasks]

    assert coro.run(main) == list(range(10))


def test_a_crashed_task_cancels_the_others_and_its_error_propagates():
    cleaned = []

    async def sleeper(n):
        try:
            await coro.sleep(60)
        finally:
            cleaned.append(n)

    async def crash():
        await coro.sleep(0.01)
        raise ValueError("task 3 broke")

    async def main():
        with pytest.raises(ValueError, match="task 3 broke"):
            async with coro.TaskGroup() as g:
                for n in range(3):
                    await g.spawn(sleeper, n)
                await g.spawn(crash)
        assert all(t.terminated for t in g.tasks)
        assert [t.cancelled for t in g.tasks] == [True, True, True, False]
        return sorted(cleaned)

    assert coro.run(main) == [0, 1, 2]


def test_an_error_in_the_block_cancels_the_group():
    async def main():
        with pytest.raises(KeyError):
            async with coro.TaskGroup() as g:
                t = await g.spawn(coro.sleep, 60)
                raise KeyError("body")
        return t.cancelled

    assert coro.run(main) is True


def test_cancelling_the_owner_cancels_the_group_first():
    async def owner(log):
        try:
            async with coro.TaskGroup() as g:
                await g.spawn(coro.sleep, 60)
                await g.spawn(coro.sleep, 60)
        finally:
            log.append([t.terminated for t in g.tasks])

    async def main():
        log = []
        t = await coro.spawn(owner, log)
        await coro.sleep(0.01)
        await t.cancel()
        return t.cancelled, log

    assert coro.run(main) == (True, [[True, True]])


def test_group_crash_is_not_reported_as_unjoined(caplog):
    async def crash():
        raise OSError("in group")

    async def main():
        try:
            async with coro.TaskGroup() as g:
                await g.spawn(crash)
        except OSError:
            pass

    coro.run(main)
    assert "never joined" not in caplog.text
