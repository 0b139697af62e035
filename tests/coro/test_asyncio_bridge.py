"""plait meets asyncio: from_asyncio, to_asyncio, and the universal objects in asyncio tasks.

Every scenario runs real asyncio code (streams over real sockets, asyncio.sleep,
asyncio.Queue) beside a real plait kernel; the leak fixture proves that the helper threads
and loops of both bridges are gone when ``run()`` / ``asyncio.run()`` return.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import gc
import logging
import queue
import threading
import time
import traceback
import weakref

import pytest

from plait import coro
from tests.support import run_python, wait_until

pytestmark = [pytest.mark.usefixtures("no_leaks"), pytest.mark.timeout(60)]


def _bridge_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("plait.coro-")]


async def _ticker(ticks: list) -> None:
    while True:
        ticks.append(1)
        await coro.sleep(0.002)


async def _time_out_once_started(
    clock: coro.MockClock, started: coro.UniversalEvent, seconds: float, call, *args, **kwargs
):
    """``await call(*args, **kwargs)`` under ``timeout_after(seconds)`` in a task, on a
    kernel run on the stopped ``clock``, which jumps past the deadline only once the other
    side has set ``started``: the timeout meets that side running, however late a loaded
    machine starts it (on real time it could expire before the call began, and the call
    was then cancelled before it ran). Raises what the task raised: ``TaskTimeout``."""

    async def timed():
        async with coro.timeout_after(seconds):
            return await call(*args, **kwargs)

    task = await coro.spawn(timed)
    await started.wait_async()
    clock.jump(seconds)
    return await task.join()


# -- from_asyncio ------------------------------------------------------------------------


async def _asyncio_echo(port: int, message: bytes) -> bytes:
    """An asyncio client over a real socket, the shape of a database driver's call."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(message)
        await writer.drain()
        return await reader.readexactly(len(message))
    finally:
        writer.close()
        await writer.wait_closed()


def test_from_asyncio_runs_asyncio_streams_against_a_plait_server_while_the_kernel_runs():
    async def echo(client, addr):
        async with client:
            while data := await client.recv(1000):
                await client.sendall(data)

    plait_ran = coro.UniversalEvent()

    async def three_ticks():
        for _ in range(3):
            await coro.sleep(0.002)
        plait_ran.set()

    async def main():
        listener = coro.tcp_server_socket("127.0.0.1", 0)
        port = listener.getsockname()[1]
        server = await coro.spawn(coro.serve, listener, echo, daemon=True)
        replies = []
        async with coro.TaskGroup() as g:
            for n in range(20):
                await g.spawn(coro.from_asyncio, _asyncio_echo(port, b"hello %d" % n))
        replies = sorted(task.result for task in g.tasks)
        await coro.spawn(three_ticks)
        # the asyncio side waits for what only a plait task can do, while the kernel runs on
        await coro.from_asyncio(asyncio.wait_for(plait_ran.wait_async(), 30))
        await server.cancel()
        return replies

    assert coro.run(main) == sorted(b"hello %d" % n for n in range(20))
    assert plait_ran.is_set()  # by a plait task, while the asyncio side waited for it
    assert _bridge_threads() == []


def test_from_asyncio_takes_coroutines_futures_awaitables_and_functions():
    class Later:
        def __await__(self):
            return asyncio.sleep(0.01, result="awaited").__await__()

    def future_of_the_loop():
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, future.set_result, "future")
        return future

    async def add(a, b):
        await asyncio.sleep(0)
        return a + b

    async def main():
        return [
            await coro.from_asyncio(add(1, 2)),
            await coro.from_asyncio(add, 3, 4),
            await coro.from_asyncio(Later()),
            await coro.from_asyncio(future_of_the_loop),
            await coro.from_asyncio(asyncio.sleep, 0, "sleep's result"),
        ]

    assert coro.run(main) == [3, 7, "awaited", "future", "sleep's result"]


_LAST_ROW: contextvars.ContextVar[str] = contextvars.ContextVar("last_row", default="unset")


async def _remember(row: str) -> asyncio.Task:
    _LAST_ROW.set(row)  # as a driver keeps per-task state: in the task's context
    return asyncio.current_task()


async def _recall() -> tuple[str, asyncio.Task]:
    return _LAST_ROW.get(), asyncio.current_task()


def test_the_calls_of_one_plait_task_share_an_asyncio_task_and_context_as_in_asyncio():
    async def two_calls(call):
        first = await call(_remember("row 1"))
        seen, second = await call(_recall())
        return seen, first is second

    async def natively(aw):  # an asyncio task awaiting the calls itself
        return await aw

    native = asyncio.run(two_calls(natively))

    async def main():
        bridged = await (await coro.spawn(two_calls, coro.from_asyncio)).join()
        another = await (await coro.spawn(coro.from_asyncio, _recall())).join()
        return bridged, another[0]

    assert native == ("row 1", True)
    assert coro.run(main) == (native, "unset")  # another plait task: its own context


def test_after_a_cancelled_call_the_next_call_of_the_task_starts_afresh():
    clock = coro.MockClock()
    started = coro.UniversalEvent()

    async def remember_then_wait(row):
        _LAST_ROW.set(row)
        started.set()
        await asyncio.sleep(30)

    async def caller():
        first = await coro.from_asyncio(_remember("row 1"))
        with pytest.raises(coro.TaskTimeout):
            async with coro.timeout_after(5):
                await coro.from_asyncio(remember_then_wait("row 2"))
        seen, after = await coro.from_asyncio(_recall())
        return seen, after is first

    async def main():
        task = await coro.spawn(caller)
        await started.wait_async()  # the second call runs: its timeout meets it running
        clock.jump(5)
        return await task.join()

    # as a new asyncio task would: a new context, a new current_task()
    assert coro.run(main, clock=clock) == ("unset", False)


def test_the_asyncio_side_of_a_plait_task_ends_with_it():
    async def others_on_the_loop():
        return len(asyncio.all_tasks()) - 1

    async def calls(n, fail):
        await coro.from_asyncio(asyncio.sleep(0))
        if fail:
            raise LookupError(n)
        return await coro.from_asyncio(asyncio.sleep(0, result=n))

    async def main():
        tasks = [await coro.spawn(calls, n, n % 3 == 0) for n in range(30)]
        for task in tasks:
            await task.wait()
        done = [task.result for task in tasks if task.exception is None]
        return done, await coro.from_asyncio(others_on_the_loop())

    done, others = coro.run(main)
    assert done == [n for n in range(30) if n % 3] and others == 0


def test_each_kernel_gets_its_own_asyncio_loop_closed_when_run_returns():
    async def running_loop():
        return asyncio.get_running_loop()

    async def main():
        first = await coro.from_asyncio(running_loop())
        assert await coro.from_asyncio(running_loop()) is first
        return first

    one, two = coro.run(main), coro.run(main)
    assert one is not two
    assert one.is_closed() and two.is_closed()


def test_asyncio_side_raising_arrives_with_its_traceback_and_the_kernel_goes_on():
    async def query():
        await asyncio.sleep(0.01)
        raise LookupError("no such row")

    async def main():
        ticks: list = []
        ticker = await coro.spawn(_ticker, ticks, daemon=True)
        with pytest.raises(LookupError, match="no such row") as info:
            await coro.from_asyncio(query())
        after = await coro.from_asyncio(asyncio.sleep(0.02, result="still works"))
        await ticker.cancel()
        return info.value, after, len(ticks)

    error, after, ticks = coro.run(main)
    frames = [frame.name for frame in traceback.extract_tb(error.__traceback__)]
    assert frames[0] == "main" and frames[-1] == "query"
    assert after == "still works" and ticks >= 2


@pytest.mark.parametrize(
    "bad, named",
    [(42, "not int"), ("SELECT 1", "not str"), (None, "not NoneType")],
)
def test_from_asyncio_given_something_not_awaitable_raises_type_error_naming_it(bad, named):
    async def main():
        ticks: list = []
        ticker = await coro.spawn(_ticker, ticks, daemon=True)
        with pytest.raises(TypeError, match=named):
            await coro.from_asyncio(bad)
        with pytest.raises(TypeError, match="returned int 3, which is not awaitable"):
            await coro.from_asyncio(len, "abc")
        with pytest.raises(TypeError, match="arguments given with an awaitable"):
            await coro.from_asyncio(asyncio.sleep(0), 1)
        ok = await coro.from_asyncio(asyncio.sleep(0, result="ok"))
        await coro.sleep(0.01)
        await ticker.cancel()
        return ok, len(ticks)

    ok, ticks = coro.run(main)
    assert ok == "ok" and ticks >= 2


def test_a_plait_timeout_cancels_the_asyncio_side_and_waits_for_its_cleanup():
    steps = []
    clock = coro.MockClock()
    started = coro.UniversalEvent()

    async def slow_query():
        started.set()
        try:
            await asyncio.sleep(30)
        finally:
            await asyncio.sleep(0.05)  # cleanup that itself waits, like a driver's rollback
            steps.append("asyncio cleanup done")

    async def main():
        with pytest.raises(coro.TaskTimeout):
            await _time_out_once_started(clock, started, 0.05, coro.from_asyncio, slow_query())
        steps.append("plait task goes on")

    coro.run(main, clock=clock)
    assert steps == ["asyncio cleanup done", "plait task goes on"]


def test_a_cancelled_plait_task_cancels_its_asyncio_call():
    steps = []
    started = coro.UniversalEvent()

    async def wait_forever():
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            steps.append("asyncio side cancelled")
            raise

    async def caller():
        await coro.from_asyncio(wait_forever())

    async def cancels_itself_first():
        await coro.current_task().cancel(blocking=False)  # pending before it can wait
        await coro.from_asyncio(asyncio.Event().wait)

    async def others_on_the_loop():
        return len(asyncio.all_tasks()) - 1

    async def main():
        task = await coro.spawn(caller)
        await started.wait_async()  # the asyncio side runs: the cancel reaches it
        await task.cancel()
        assert task.cancelled
        assert await coro.from_asyncio(others_on_the_loop()) == 0  # the call had ended
        task = await coro.spawn(cancels_itself_first)
        await task.wait()
        assert task.cancelled
        assert await coro.from_asyncio(others_on_the_loop()) == 0

    coro.run(main)
    assert steps == ["asyncio side cancelled"]


def test_asyncio_side_ignoring_cancellation_is_waited_for_only_cancel_timeout(caplog):
    clock = coro.MockClock()
    started = coro.UniversalEvent()

    async def stubborn():
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await asyncio.sleep(30)  # ignores the first cancellation; the loop's shutdown ends it

    async def main():
        with pytest.raises(coro.TaskTimeout):
            await _time_out_once_started(
                clock, started, 0.02, coro.from_asyncio, stubborn(), cancel_timeout=0.05
            )
        return await coro.from_asyncio(asyncio.sleep(0, result="next call"))

    with caplog.at_level(logging.WARNING, logger="plait.coro"):
        assert coro.run(main, clock=clock) == "next call"
    assert "did not finish 0.05 s after its cancellation" in caplog.text


async def _swallows_its_cancellation(steps: list, started: coro.UniversalEvent) -> str:
    started.set()
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        steps.append("asyncio side cancelled")
    return "a value nobody asked for"


def test_a_cancelled_call_stays_cancelled_when_the_asyncio_side_swallows_it():
    steps: list = []
    clock = coro.MockClock()
    started = coro.UniversalEvent()

    async def caller():
        await coro.from_asyncio(_swallows_its_cancellation, steps, started)
        steps.append("caller went on")  # never: its cancellation must not be lost

    async def main():
        with pytest.raises(coro.TaskTimeout):
            await _time_out_once_started(
                clock, started, 0.05, coro.from_asyncio, _swallows_its_cancellation, steps, started
            )
        started.clear()
        task = await coro.spawn(caller)
        await started.wait_async()  # the asyncio side runs: the cancel reaches it
        await task.cancel()
        return task.cancelled

    assert coro.run(main, clock=clock) is True
    assert steps == ["asyncio side cancelled", "asyncio side cancelled"]


def test_a_cancelled_to_asyncio_call_stays_cancelled_when_the_plait_side_swallows_it():
    steps: list = []
    started = coro.UniversalEvent()

    async def swallows():
        started.set()
        try:
            await coro.sleep(30)
        except coro.TaskCancelled:
            steps.append("plait side cancelled")
        return "a value nobody asked for"

    async def main():
        call = asyncio.ensure_future(coro.to_asyncio(swallows))
        await started.wait_async()  # the plait side runs: the timeout's cancel reaches it
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(call, 0.05)
        started.clear()
        task = asyncio.create_task(coro.to_asyncio(swallows))
        await started.wait_async()  # the plait side runs: the cancel reaches it
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert steps == ["plait side cancelled", "plait side cancelled"]


def test_a_deadlock_after_bridged_calls_is_still_reported():
    async def main():
        await coro.from_asyncio(asyncio.sleep(0))
        await coro.Event().wait()  # nothing will ever set it

    with pytest.raises(coro.DeadlockError, match="EVENT_WAIT"):
        coro.run(main)


def test_asyncio_cancelling_its_own_side_is_a_bridge_error_not_a_plait_cancellation():
    async def cancelled_by_asyncio():
        asyncio.current_task().cancel()
        await asyncio.sleep(1)

    async def main():
        with pytest.raises(coro.BridgeCancelled, match="cancelled by asyncio code") as info:
            await coro.from_asyncio(cancelled_by_asyncio())
        assert isinstance(info.value.__cause__, asyncio.CancelledError)
        return "the task was not cancelled"

    assert coro.run(main) == "the task was not cancelled"
    assert issubclass(coro.BridgeCancelled, concurrent.futures.CancelledError)


async def _parked(task: coro.Task, state: str) -> None:
    while task.state != state:
        await coro.sleep(0)


@pytest.mark.parametrize("twin", ["idle", "new"])
def test_a_call_whose_asyncio_task_is_cancelled_before_it_begins_is_answered(twin):
    """asyncio code cancels the loop's other tasks (a call's own asyncio task among them)
    after that task was handed a call and before it began it: the call must be answered
    (BridgeCancelled), not lost with its plait task waiting forever."""
    go = coro.Event()

    async def cancel_the_others():
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()
        return "cancelled the others"

    async def never_begun():
        return "ran"

    async def canceller():
        await go.wait()
        return await coro.from_asyncio(cancel_the_others)

    async def victim():
        if twin == "idle":
            await coro.from_asyncio(asyncio.sleep(0))  # its asyncio task waits for a call
        await go.wait()
        async with coro.timeout_after(30):  # the call lost: a timeout, not an answer
            with pytest.raises(coro.BridgeCancelled, match="cancelled by asyncio code"):
                await coro.from_asyncio(never_begun)
            return await coro.from_asyncio(asyncio.sleep(0, result="the next call runs"))

    async def main():
        first = await coro.spawn(canceller)
        await _parked(first, "EVENT_WAIT")
        second = await coro.spawn(victim)
        await _parked(second, "EVENT_WAIT")
        go.set()  # both calls go to the loop in one batch, the canceller's first
        return await first.join(), await second.join()

    assert coro.run(main) == ("cancelled the others", "the next call runs")


def test_asyncio_objects_made_on_the_kernels_loop_serve_many_calls():
    async def make_queue():  # on the loop the queue binds to
        return asyncio.Queue(2)

    async def main():
        q = await coro.from_asyncio(make_queue)
        got = []

        async def consumer():
            while (item := await coro.from_asyncio(q.get)) is not None:
                got.append(item)

        async with coro.TaskGroup() as g:
            await g.spawn(consumer)
            for n in range(10):
                await coro.from_asyncio(q.put, n)  # waits while the asyncio queue is full
            await coro.from_asyncio(q.put, None)
        return got

    assert coro.run(main) == list(range(10))


def test_a_daemon_tasks_first_bridged_call_during_shutdown_is_served_and_run_returns():
    # the bridge's flusher task is started while run() shuts down: the kernel cancels it at
    # once instead of leaving it parked (a registered socket kept the kernel polling forever)
    steps = []

    async def notify():
        await asyncio.sleep(0.01)
        return "notified"

    async def acceptor(listener):
        try:
            await listener.accept()
        finally:
            steps.append(await coro.from_asyncio(notify))

    async def main(listener):
        await coro.spawn(acceptor, listener, daemon=True)
        await coro.sleep(0.02)
        return "main done"

    listener = coro.tcp_server_socket("127.0.0.1", 0)  # registered while run() shuts down
    try:
        assert coro.run(main, listener) == "main done"
    finally:
        listener.close_nowait()
    assert steps == ["notified"]
    assert _bridge_threads() == []


async def _cleans_up_slowly(started: threading.Event, steps: list, deaf: bool = False) -> None:
    """asyncio code that cleans up for a while once cancelled (or ignores it, if deaf)."""
    started.set()
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        steps.append("asyncio side cancelled")
        await asyncio.sleep(30 if deaf else 0.1)  # the loop's shutdown cancels a deaf one
        steps.append("asyncio cleanup done")
        raise


async def _cancel_once_started(steps: list, deaf: bool, cancel_timeout: float | None) -> None:
    started = threading.Event()
    call = coro.from_asyncio(_cleans_up_slowly, started, steps, deaf, cancel_timeout=cancel_timeout)
    task = await coro.spawn(call)
    await coro.run_in_thread(started.wait, 10)
    await task.cancel()
    assert task.cancelled
    steps.append("plait task goes on")


@pytest.mark.parametrize("cancel_timeout", [5.0, None])
def test_the_cancel_bound_is_real_time_even_on_an_autojumping_mock_clock(cancel_timeout):
    steps: list = []
    clock = coro.MockClock(autojump_threshold=0)  # jumps to the next timer whenever idle
    coro.run(_cancel_once_started, steps, False, cancel_timeout, clock=clock)
    assert steps == ["asyncio side cancelled", "asyncio cleanup done", "plait task goes on"]


def test_the_cancel_bound_fires_on_a_stopped_mock_clock(caplog):
    steps: list = []
    with caplog.at_level(logging.WARNING, logger="plait.coro"):
        coro.run(_cancel_once_started, steps, True, 0.05, clock=coro.MockClock())
    assert steps == ["asyncio side cancelled", "plait task goes on"]
    assert "did not finish 0.05 s after its cancellation" in caplog.text


def test_an_abandoned_call_holds_run_only_a_short_bound(monkeypatch, caplog):
    from plait.coro import aio

    monkeypatch.setattr(aio, "JOIN_TIMEOUT", 3600.0)  # the bound is not the join timeout
    monkeypatch.setattr(aio, "CANCEL_TIMEOUT", 0.05)
    clock = coro.MockClock()
    started = coro.UniversalEvent()

    async def deaf():
        started.set()
        while True:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                pass

    async def main():
        with pytest.raises(coro.TaskTimeout):
            await _time_out_once_started(
                clock, started, 0.02, coro.from_asyncio, deaf, cancel_timeout=0.05
            )
        return "gave up"

    with caplog.at_level(logging.WARNING):
        assert coro.run(main, clock=clock) == "gave up"
    assert "ignored its cancellation; left behind" in caplog.text
    assert "plait.coro-asyncio still runs" not in caplog.text
    assert _bridge_threads() == []


@pytest.mark.parametrize(
    ("bad", "error"),
    [("5", TypeError), (True, TypeError), (-1, ValueError), (float("nan"), ValueError)],
)
def test_a_bad_cancel_timeout_is_refused_up_front_naming_it(bad, error):
    async def main():
        aw = asyncio.sleep(0)
        with pytest.raises(error, match="cancel_timeout"):
            await coro.from_asyncio(aw, cancel_timeout=bad)
        assert aw.cr_frame is None  # closed: the bridge will not run it
        with pytest.raises(error, match="cancel_timeout"):
            await coro.from_asyncio(asyncio.sleep, 0, cancel_timeout=bad)
        return "refused"

    assert coro.run(main) == "refused"


def test_from_asyncio_outside_a_kernel_closes_the_coroutine_it_was_given():
    async def main():
        aw = asyncio.sleep(0)
        with pytest.raises(coro.NoKernelError):
            await coro.from_asyncio(aw)
        return aw.cr_frame is None

    assert asyncio.run(main()) is True


# -- to_asyncio --------------------------------------------------------------------------


async def _plait_echo_client(port: int, message: bytes) -> bytes:
    sock = await coro.open_connection("127.0.0.1", port)
    async with sock:
        stream = sock.as_stream()
        await stream.write(message)
        return await stream.read_exactly(len(message))


def test_to_asyncio_runs_plait_streams_against_an_asyncio_server():
    async def handle(reader, writer):
        writer.write(await reader.readexactly(7))
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            replies = await asyncio.gather(
                *(coro.to_asyncio(_plait_echo_client, port, b"ping %02d" % n) for n in range(10))
            )
        assert _bridge_threads() == ["plait.coro-for-asyncio"]
        return replies

    assert asyncio.run(main()) == [b"ping %02d" % n for n in range(10)]
    assert _bridge_threads() == []  # the loop's plait kernel ended with asyncio.run


async def _plait_slow(steps: list, started: coro.UniversalEvent) -> None:
    """plait code that cleans up for a while once cancelled; sets ``started`` as it runs."""
    started.set()
    try:
        await coro.sleep(30)
    finally:
        await coro.sleep(0.05)
        steps.append("plait cleanup done")


def test_to_asyncio_carries_errors_and_cancellation_across():
    steps = []
    started = coro.UniversalEvent()

    async def plait_fails():
        await coro.sleep(0.01)
        raise PermissionError("denied by plait")

    async def main():
        with pytest.raises(PermissionError) as info:
            await coro.to_asyncio(plait_fails)
        frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
        assert frames[0] == "main" and frames[-1] == "plait_fails"
        call = asyncio.ensure_future(coro.to_asyncio(_plait_slow, steps, started))
        await started.wait_async()  # the plait side runs: the timeout's cancel reaches it
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(call, 0.05)
        steps.append("asyncio task goes on")
        with pytest.raises(TypeError, match="not int"):
            await coro.to_asyncio(42)
        return await coro.to_asyncio(coro.sleep, 0)

    assert asyncio.run(main()) is None
    assert steps == ["plait cleanup done", "asyncio task goes on"]


def test_a_plait_side_cancelled_by_plait_is_a_bridge_error_in_asyncio():
    async def cancels_itself():
        await coro.current_task().cancel(blocking=False)
        await coro.sleep(30)

    async def long_call(started):
        started.set()
        try:
            await coro.sleep(30)
        except coro.TaskCancelled:
            steps.append("the plait side of the other call was cancelled")
            raise

    steps = []

    async def main():
        started = coro.UniversalEvent()
        other = asyncio.create_task(coro.to_asyncio(long_call, started, cancel_timeout=None))
        await asyncio.wait_for(started.wait_async(), 30)
        with pytest.raises(
            coro.BridgeCancelled, match="the plait side of a to_asyncio call"
        ) as info:
            await coro.to_asyncio(cancels_itself)
        assert isinstance(info.value.__cause__, coro.TaskCancelled)  # where plait cancelled
        threads = [t.name for t in threading.enumerate()].count("plait.coro-for-asyncio")
        # the kernel serves on, and it is still the loop's: cancelling the other call
        # reaches its plait side
        other.cancel()
        with pytest.raises(asyncio.CancelledError):
            await other
        return threads, await coro.to_asyncio(coro.sleep, 0)

    assert asyncio.run(main()) == (1, None)
    assert steps == ["the plait side of the other call was cancelled"]


def test_a_loop_closed_without_cancelling_its_tasks_does_not_hang_the_exit():
    program = """if True:
        import asyncio, threading
        from plait import coro

        async def double(n):
            await coro.sleep(0)
            return 2 * n

        loop = asyncio.new_event_loop()  # run without asyncio.run: nothing cancels the keeper
        print(loop.run_until_complete(coro.to_asyncio(double, 21)))
        print(sorted(t.name for t in threading.enumerate()))
        """
    done = run_python("-c", program, timeout=60, sys_path=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["42", "['MainThread', 'plait.coro-for-asyncio']"]
    assert "still runs" not in done.stderr  # atexit closed the kernel at once
    assert "RuntimeError" not in done.stderr  # the keeper, dropped at exit, awaits nothing


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def new_loop(request):
    """A loop factory; module-scoped so that it is made before the leak check starts."""
    if request.param == "asyncio":
        return asyncio.new_event_loop
    uvloop = pytest.importorskip("uvloop")
    uvloop.new_event_loop().close()  # uvloop's first loop opens a pipe for the process's life
    return uvloop.new_event_loop


def test_a_loop_closed_by_hand_frees_its_plait_kernel_when_it_goes(new_loop):
    # run_until_complete + close, as asyncio.run does not: nothing cancels the keeper, so
    # the kernel must go with the loop (its thread and its epoll and wake-up fds)
    async def double(n):
        await coro.sleep(0)
        return 2 * n

    loops = []
    for n in range(3):
        loop = new_loop()
        assert loop.run_until_complete(coro.to_asyncio(double, n)) == 2 * n
        loop.close()
        loops.append(weakref.ref(loop))
        del loop

    def collected_and_gone():  # the kernel's thread may still hold the last call a moment
        gc.collect()
        return not _bridge_threads()

    assert wait_until(collected_and_gone, 10), _bridge_threads()
    assert [loop() for loop in loops] == [None, None, None]


@pytest.mark.parametrize("worker_first", [True, False])
def test_to_asyncio_in_the_cleanup_of_a_task_cancelled_by_asyncio_run_is_served(worker_first):
    # asyncio.run cancels every task at once, the loop's keeper among them: the kernel
    # serves the calls those tasks make as they clean up before it closes
    steps = []

    async def plait_cleanup():
        await coro.sleep(0.01)
        return "cleaned"

    async def worker():
        try:
            await asyncio.sleep(3600)
        finally:
            steps.append(await coro.to_asyncio(plait_cleanup))

    async def main():
        if worker_first:
            asyncio.get_running_loop().create_task(worker())
        steps.append(await coro.to_asyncio(plait_cleanup))  # starts the kernel and keeper
        if not worker_first:
            asyncio.get_running_loop().create_task(worker())
        await asyncio.sleep(0.01)

    asyncio.run(main())
    assert steps == ["cleaned", "cleaned"]
    assert _bridge_threads() == []


def test_a_call_made_late_in_the_cancel_sweep_is_served_and_one_after_the_loop_ended_is_refused():
    # the kernel closes in the loop's shutdown_asyncgens, after asyncio.run's cancel sweep:
    # a task cancelled by the sweep may still clean up through to_asyncio, however late
    steps = []

    async def double(n):
        return 2 * n

    async def late_worker():
        try:
            await asyncio.sleep(3600)
        finally:
            for _ in range(3):
                await asyncio.sleep(0)
            steps.append(await coro.to_asyncio(double, 21))

    async def main():
        assert await coro.to_asyncio(double, 21) == 42
        asyncio.get_running_loop().create_task(late_worker())
        await asyncio.sleep(0.01)

    asyncio.run(main())
    assert steps == [42]
    assert _bridge_threads() == []

    loop = asyncio.new_event_loop()  # a loop ended with care, by hand
    try:
        assert loop.run_until_complete(coro.to_asyncio(double, 1)) == 2
        loop.run_until_complete(loop.shutdown_asyncgens())
        assert _bridge_threads() == []
        with pytest.raises(RuntimeError, match="loop is shutting down"):
            loop.run_until_complete(coro.to_asyncio(double, 1))
    finally:
        loop.close()


def test_code_that_cancels_or_awaits_every_other_task_does_not_meet_the_bridge():
    # shutdown code of a loop that goes on: the kernel of the loop is not one of its tasks
    async def double(n):
        return 2 * n

    async def main():
        assert await coro.to_asyncio(double, 1) == 2
        others = asyncio.all_tasks() - {asyncio.current_task()}
        await asyncio.wait_for(asyncio.gather(*others), 30)  # no task waits for the loop's end
        for task in others:
            task.cancel()
        return await coro.to_asyncio(double, 21)

    assert asyncio.run(main()) == 42
    assert _bridge_threads() == []


@pytest.mark.parametrize("cleanup", [0.0, 0.3], ids=["at-once", "late-then-collected"])
def test_a_loop_whose_plait_kernel_stopped_gets_a_new_one(caplog, cleanup):
    """The loop's next call starts a new kernel. A stopped kernel whose end takes a while
    (a task's cleanup holds its thread) is still waited for by asyncio.run, even after a
    collection: its keeper must not go with the attribute the new kernel's took over."""

    async def quitter():
        await coro.sleep(0)
        raise SystemExit(3)

    async def slow_cleanup():
        try:
            await coro.sleep(30)
        finally:
            time.sleep(cleanup)  # holds up the stopping kernel's thread

    async def starts_a_quitter():
        await coro.spawn(slow_cleanup)
        await coro.spawn(quitter)
        await coro.sleep(30)

    async def double(n):
        return 2 * n

    async def main():
        with pytest.raises(coro.BridgeCancelled, match="SystemExit"):
            await coro.to_asyncio(starts_a_quitter)
        result = await asyncio.wait_for(coro.to_asyncio(double, 21), 30)
        gc.collect()
        return result

    with caplog.at_level(logging.ERROR, logger="plait.coro"):
        assert asyncio.run(main()) == 42
    assert _bridge_threads() == []
    assert "kernel of an asyncio loop stopped: SystemExit(3)" in caplog.text


def test_tasks_spawned_through_to_asyncio_are_cancelled_when_the_loop_ends(monkeypatch):
    from plait.coro import aio

    monkeypatch.setattr(aio, "JOIN_TIMEOUT", 3600.0)  # the end waits for nothing so long
    steps = []

    async def serve_forever():
        try:
            await coro.sleep(3600)
        finally:
            steps.append("server cancelled")

    async def start_server():
        await coro.spawn(serve_forever)  # not a daemon: run() would wait for it
        return "started"

    async def main():
        return await coro.to_asyncio(start_server)

    assert asyncio.run(main()) == "started"
    assert steps == ["server cancelled"]
    assert _bridge_threads() == []


def test_to_asyncio_checks_cancel_timeout_and_takes_none_for_no_limit():
    steps: list = []
    started = coro.UniversalEvent()

    async def main():
        with pytest.raises(ValueError, match="cancel_timeout"):
            await coro.to_asyncio(_plait_slow, steps, started, cancel_timeout=-1)
        with pytest.raises(TypeError, match="cancel_timeout"):
            await coro.to_asyncio(_plait_slow, steps, started, cancel_timeout="5")
        task = asyncio.create_task(
            coro.to_asyncio(_plait_slow, steps, started, cancel_timeout=None)
        )
        await started.wait_async()  # the plait side runs: the cancel reaches it
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        steps.append("asyncio goes on")

    asyncio.run(main())
    assert steps == ["plait cleanup done", "asyncio goes on"]


def test_loops_that_used_the_bridge_or_universal_objects_are_freed_when_they_end():
    async def one():
        return 1

    async def main(done: list):
        event = coro.UniversalEvent()
        asyncio.get_running_loop().call_soon(event.set)
        await event.wait_async()
        done.append(await coro.to_asyncio(one))
        return weakref.ref(asyncio.get_running_loop())

    done: list = []
    loops = [asyncio.run(main(done)) for _ in range(3)]
    gc.collect()
    assert done == [1, 1, 1]
    assert [loop() for loop in loops] == [None, None, None]
    assert _bridge_threads() == []


def test_both_bridges_nested():
    async def asyncio_side(n):
        return await coro.to_asyncio(plait_side, n)

    async def plait_side(n):
        await coro.sleep(0)
        return n * 2

    async def main():
        return await coro.from_asyncio(asyncio_side(21))

    assert coro.run(main) == 42


# -- the universal objects in plait tasks, asyncio tasks and threads at once ----------------


def test_universal_queue_and_event_serve_plait_asyncio_and_threads_together():
    jobs = coro.UniversalQueue(maxsize=8)
    results = coro.UniversalQueue()
    go = coro.UniversalEvent()
    per_producer = 200

    async def worker(world):  # the same coroutine function serves plait and asyncio
        await go.wait_async()
        while (item := await jobs.get_async()) is not None:
            await results.put_async((world, item))
            jobs.task_done()
        jobs.task_done()

    async def plait_side():
        async with coro.TaskGroup() as g:
            for _ in range(3):
                await g.spawn(worker, "plait")
            for n in range(per_producer):
                await jobs.put_async(("from plait", n))

    async def asyncio_side():
        workers = [asyncio.create_task(worker("asyncio")) for _ in range(3)]
        for n in range(per_producer):
            await jobs.put_async(("from asyncio", n))
        await asyncio.gather(*workers)

    def thread_worker():
        assert go.wait(30)
        while (item := jobs.get(timeout=30)) is not None:
            results.put(("thread", item))
            jobs.task_done()
        jobs.task_done()

    def thread_producer():
        for n in range(per_producer):
            jobs.put(("from thread", n), timeout=30)

    threads = [
        threading.Thread(target=coro.run, args=(plait_side,)),
        threading.Thread(target=asyncio.run, args=(asyncio_side(),)),
        threading.Thread(target=thread_worker),
        threading.Thread(target=thread_producer),
    ]
    for thread in threads:
        thread.start()
    go.set()
    got = [results.get(timeout=30) for _ in range(3 * per_producer)]
    for _ in range(7):  # one stop per worker: 3 plait, 3 asyncio, 1 thread
        jobs.put(None, timeout=30)
    assert jobs.join(timeout=30)  # every item, stops included, was marked done
    for thread in threads:
        thread.join(30)
    assert results.empty()
    handled = sorted(item for _, item in got)
    assert handled == sorted(
        (origin, n)
        for origin in ("from plait", "from asyncio", "from thread")
        for n in range(per_producer)
    )
    assert {world for world, _ in got} <= {"plait", "asyncio", "thread"}


def test_a_cancelled_asyncio_get_gives_its_item_back():
    q = coro.UniversalQueue()

    async def main():
        getter = asyncio.create_task(q.get_async())
        await asyncio.sleep(0)  # the getter waits in the queue
        q.put_nowait("item")  # chooses the getter and hands it the item...
        getter.cancel()  # ...which is cancelled before it could run
        with pytest.raises(asyncio.CancelledError):
            await getter
        first = q.get_nowait()
        with pytest.raises(asyncio.TimeoutError):  # a timed-out get takes nothing either
            await asyncio.wait_for(q.get_async(), 0.01)
        q.put_nowait("second")
        return first, q.get_nowait()

    assert asyncio.run(main()) == ("item", "second")
    assert q.qsize() == 0 and q.statistics()["getters_waiting"] == 0


def test_a_thread_waiting_on_a_universal_queue_is_served_before_coroutines_that_came_later():
    q = coro.UniversalQueue(maxsize=1)
    q.put_nowait("first")
    got: list = []

    def waiting(key: str, count: int) -> bool:
        return q.statistics()[key] == count

    async def main():
        putter = threading.Thread(target=q.put, args=("thread", True, 30))
        putter.start()  # the queue is full: the thread waits...
        assert wait_until(lambda: waiting("putters_waiting", 1), 10)
        tasks = [asyncio.create_task(q.put_async(("asyncio", n))) for n in range(5)]
        await asyncio.sleep(0)  # ...and asyncio putters queue up behind it
        for _ in range(7):
            got.append(await q.get_async())
        await asyncio.gather(*tasks)
        putter.join(30)
        getter = threading.Thread(target=lambda: got.append(q.get(timeout=30)))
        getter.start()  # the queue is empty: the thread waits for an item...
        assert wait_until(lambda: waiting("getters_waiting", 1), 10)
        tasks = [asyncio.create_task(q.get_async()) for _ in range(3)]
        await asyncio.sleep(0)  # ...and asyncio getters queue up behind it
        for n in range(4):
            await q.put_async(n)
        getter.join(30)
        return await asyncio.gather(*tasks)

    assert asyncio.run(main()) == [1, 2, 3]
    assert got == ["first", "thread", *(("asyncio", n) for n in range(5)), 0]


def test_an_item_given_back_by_a_cancelled_asyncio_get_keeps_the_queue_within_maxsize():
    q = coro.UniversalQueue(maxsize=1)

    async def main():
        getter = asyncio.create_task(q.get_async())
        await asyncio.sleep(0)  # the getter waits in the queue
        q.put_nowait("handed")  # chooses the getter, which has not run yet: the item
        assert q.full()  # still holds its slot...
        with pytest.raises(queue.Full):
            q.put_nowait("one too many")
        putter = asyncio.create_task(q.put_async("next"))  # ...so a putter waits
        await asyncio.sleep(0)
        getter.cancel()  # the item goes back, into its slot: the putter waits on
        with pytest.raises(asyncio.CancelledError):
            await getter
        assert (q.qsize(), q.statistics()["putters_waiting"]) == (1, 1)
        first = await q.get_async()  # frees the slot: the putter puts
        await putter
        second = q.get_nowait()
        getter = asyncio.create_task(q.get_async())
        await asyncio.sleep(0)
        putter = asyncio.create_task(q.put_async("waits for the getter to run"))
        q.put_nowait("kept")  # the getter runs and keeps it: its slot goes to the putter
        third = await getter
        await putter
        return first, second, third, q.get_nowait(), q.qsize()

    assert asyncio.run(main()) == ("handed", "next", "kept", "waits for the getter to run", 0)


def test_universal_async_methods_outside_any_loop_name_the_cause():
    q = coro.UniversalQueue()
    waiting = q.get_async()
    with pytest.raises(coro.NoKernelError, match="neither a plait kernel nor an asyncio loop"):
        waiting.send(None)


def test_universal_join_and_event_wait_from_asyncio_with_timeouts():
    q = coro.UniversalQueue()
    ev = coro.UniversalEvent()

    def worker():
        while q.get(timeout=30) is not None:
            q.task_done()
        q.task_done()
        ev.set()

    async def main():
        with pytest.raises(asyncio.TimeoutError):  # a timed-out wait leaves no waiter behind
            await asyncio.wait_for(ev.wait_async(), 0.01)
        thread = threading.Thread(target=worker)
        thread.start()
        for n in range(20):
            await q.put_async(n)
        await asyncio.wait_for(q.join_async(), 30)
        await q.put_async(None)
        await asyncio.wait_for(ev.wait_async(), 30)
        thread.join(30)
        return ev.is_set(), q.statistics()["unfinished"]

    assert asyncio.run(main()) == (True, 0)
