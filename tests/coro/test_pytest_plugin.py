"""The pytest plugin, run by a real pytest in a child process on small test files: async
tests and fixtures in one kernel, the clock options, the refusals, and the tests it
leaves to others."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import plait

pytest_plugins = ["pytester"]
pytestmark = [pytest.mark.usefixtures("no_leaks"), pytest.mark.timeout(120)]

# The plugin by module name, and not by its entry point (blocked, in case plait is
# installed with it), so that the plait under test is the one that runs.
PLUGIN_ARGS = ("-p", "no:plait", "-p", "plait.pytest_plugin", "-p", "no:cacheprovider")


@pytest.fixture
def run_pytest(pytester, monkeypatch):
    root = str(Path(plait.__file__).resolve().parent.parent)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    )

    def run(source: str, *args: str) -> pytest.RunResult:
        pytester.makepyfile(test_scenario=source)
        return pytester.runpytest_subprocess(*PLUGIN_ARGS, "-rA", *args, timeout=100)

    return run


def test_async_tests_and_their_fixtures_run_in_one_kernel(run_pytest):
    result = run_pytest(
        """
        import socket
        import pytest
        from plait import coro

        TORN_DOWN = []

        async def test_an_async_test_is_the_main_task_of_a_kernel():
            await coro.sleep(0)
            assert coro.current_task().name == "test_an_async_test_is_the_main_task_of_a_kernel"

        @pytest.mark.plait(clock="autojump")
        async def test_a_minute_long_timeout_on_the_autojump_clock():
            with pytest.raises(coro.TaskTimeout):
                async with coro.timeout_after(60):
                    await coro.Event().wait()
            assert coro.clock() == 60.0

        async def test_the_mock_clock_fixture_is_the_kernel_clock(plait_mock_clock):
            sleeper = await coro.spawn(coro.sleep, 5)
            await coro.sleep(0)
            plait_mock_clock.jump(5)
            await sleeper.join()
            assert coro.clock() == 5.0

        async def test_the_autojump_fixture(plait_autojump_clock):
            await coro.sleep(3600)
            assert plait_autojump_clock.current_time() == 3600.0

        @pytest.fixture
        async def echo_peer():
            a, b = socket.socketpair()
            served = coro.Socket(a)

            async def echo():
                while data := await served.recv(100):
                    await served.sendall(data)

            task = await coro.spawn(echo)
            peer = coro.Socket(b)
            yield peer
            await peer.close()
            await task.join()
            await served.close()
            TORN_DOWN.append("echo_peer")

        @pytest.fixture
        async def greeting(echo_peer):
            await echo_peer.sendall(b"hello")
            return await echo_peer.recv(100)

        async def test_async_fixtures_share_the_test_kernel(greeting, echo_peer, tmp_path):
            assert greeting == b"hello" and tmp_path.is_dir()
            await echo_peer.sendall(b"again")
            assert await echo_peer.recv(100) == b"again"

        class TestInAClass:
            @pytest.fixture
            async def number(self):
                await coro.sleep(0)
                return 7

            async def test_method_and_method_fixture(self, number):
                assert number == 7

        async def test_a_failing_async_test_fails(echo_peer):
            await coro.sleep(0)
            assert 1 + 1 == 3

        def test_the_yielding_fixture_was_finished_in_its_kernel_both_times():
            assert TORN_DOWN == ["echo_peer", "echo_peer"]
        """
    )
    result.assert_outcomes(passed=7, failed=1)
    result.stdout.fnmatch_lines(
        ["*assert (1 + 1) == 3*", "FAILED*test_a_failing_async_test_fails*"]
    )


def test_what_cannot_run_in_a_kernel_is_refused_by_name(run_pytest):
    result = run_pytest(
        """
        import pytest
        from plait import coro

        @pytest.fixture(scope="module")
        async def wide():
            return 1

        async def test_module_scoped_async_fixture(wide):
            pass

        @pytest.fixture
        async def inner():
            return 1

        @pytest.fixture
        def sync_outer(inner):
            return inner

        async def test_sync_fixture_on_an_async_one(sync_outer):
            pass

        @pytest.fixture
        async def empty():
            if False:
                yield

        async def test_fixture_that_does_not_yield(empty):
            pass

        @pytest.fixture
        async def twice():
            yield 1
            yield 2

        async def test_fixture_that_yields_twice(twice):
            pass

        @pytest.mark.plait(clock="sometimes")
        async def test_unknown_clock():
            pass

        @pytest.mark.plait(clock="mock")
        async def test_two_clocks(plait_autojump_clock):
            pass

        @pytest.mark.plait(clock="mock")
        async def test_stopped_clock_that_nobody_jumps():
            await coro.sleep(1)

        async def test_jump_from_a_thread(plait_autojump_clock):
            await coro.run_in_thread(plait_autojump_clock.jump, 1)

        @pytest.fixture
        async def late():
            return 1

        async def test_async_fixture_asked_for_inside_the_kernel(request):
            request.getfixturevalue("late")

        @pytest.fixture
        async def async_clock():
            return coro.MockClock(autojump_threshold=0)

        async def test_clock_of_an_async_fixture(async_clock):
            pass
        """
    )
    # a second yield is found at teardown: an error there, as for a synchronous fixture
    result.assert_outcomes(errors=3, failed=7, passed=1)
    result.stdout.fnmatch_lines_random(
        [
            "*async fixture 'wide' has scope 'module'*must be function-scoped*",
            "*fixture 'sync_outer' is synchronous but takes the async fixture 'inner'*",
            "*async fixture 'empty' did not yield a value*",
            "*ERROR at teardown of test_fixture_that_yields_twice*",
            "*async fixture 'twice' has more than one 'yield'*",
            "*takes 'autojump', 'mock' or a MockClock, got 'sometimes'*",
            "*gets more than one MockClock*plait_autojump_clock*",
            "*DeadlockError*stopped MockClock*",
            "*MockClockError*called from thread*",
            "*async fixture 'late' was asked for after the test's kernel started*",
            "*async fixture 'async_clock' returned a MockClock*had started on real time*",
        ]
    )


def test_tests_of_other_plugins_and_sync_tests_are_left_alone(run_pytest):
    result = run_pytest(
        """
        import asyncio
        import sys
        import unittest

        import pytest

        pytestmark = pytest.mark.plait

        def test_a_sync_test_under_the_marker_runs_as_usual_and_nothing_imported_coro():
            assert "plait.coro" not in sys.modules

        @pytest.mark.trio
        async def test_claimed_by_another_plugin():
            pass

        class TestUnittestRunsItsOwn(unittest.IsolatedAsyncioTestCase):
            async def test_on_the_standard_runner(self):
                self.assertIsNotNone(asyncio.get_running_loop())

        class TestUnittestWithAnAsyncFixture(unittest.IsolatedAsyncioTestCase):
            @pytest.fixture(autouse=True)
            async def not_plaits(self):
                pass

            async def test_left_to_pytest(self):
                pass
        """,
        "-p",
        "no:randomly",
    )
    # no trio plugin is loaded, so pytest itself refuses the trio test: plait left it
    # and pytest refuses the unittest test's async fixture: plait did not take it either
    result.assert_outcomes(passed=2, failed=1, errors=1)
    result.stdout.fnmatch_lines_random(
        [
            "*async def functions are not natively supported*",
            "*'test_left_to_pytest' requested an async fixture 'not_plaits'*",
        ]
    )


def test_hypothesis_runs_each_example_in_a_kernel_of_its_own(run_pytest):
    result = run_pytest(
        """
        import pytest
        from hypothesis import HealthCheck, given, settings, strategies as st
        from plait import coro

        # a new clock for each example: on one clock, the sleeps would add up
        @pytest.mark.plait(clock="autojump")
        @settings(max_examples=25, deadline=None)
        @given(st.floats(min_value=1, max_value=1e6))
        async def test_each_example_sleeps_on_a_new_clock(seconds):
            await coro.sleep(seconds)
            assert coro.clock() == seconds

        @pytest.fixture
        async def resource():
            return 1

        @settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(st.integers())
        async def test_with_an_async_fixture(resource, n):
            pass
        """
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*runs once per hypothesis example*synchronous fixtures only*"])


def test_a_fixture_teardown_error_is_an_error_at_teardown_as_for_a_sync_fixture(run_pytest):
    result = run_pytest(
        """
        import pytest

        @pytest.fixture
        def sync_resource():
            yield "r"
            raise RuntimeError("sync teardown failed")

        @pytest.fixture
        async def async_resource():
            yield "r"
            raise RuntimeError("async teardown failed")

        @pytest.fixture
        async def second_resource():
            yield "s"
            raise KeyError("second teardown failed")

        def test_sync_passes(sync_resource):
            assert sync_resource == "r"

        async def test_async_passes(async_resource, second_resource):
            assert async_resource == "r"

        def test_sync_fails(sync_resource):
            assert sync_resource == "x"

        async def test_async_fails(async_resource):
            assert async_resource == "x"
        """
    )
    # each test: its own outcome at the call, its fixture's error at teardown
    result.assert_outcomes(passed=2, failed=2, errors=4)
    result.stdout.fnmatch_lines_random(
        [
            "PASSED*test_sync_passes*",
            "PASSED*test_async_passes*",
            "*ERROR at teardown of test_async_passes*",
            "*ERROR at teardown of test_async_fails*",
            "FAILED*test_async_fails - AssertionError*",
            "E*RuntimeError: async teardown failed",
            "*KeyError: 'second teardown failed'",
        ]
    )


def test_a_clock_given_to_the_marker_is_a_new_clock_for_each_test(run_pytest):
    result = run_pytest(
        """
        import pytest
        from plait import coro

        pytestmark = pytest.mark.plait(clock=coro.MockClock(autojump_threshold=0, start=5))

        @pytest.mark.parametrize("run", range(3))
        async def test_each_starts_at_the_clocks_start(run):
            assert coro.clock() == 5.0
            await coro.sleep(3600)
            assert coro.clock() == 3605.0
        """,
        "-p",
        "no:randomly",
    )
    result.assert_outcomes(passed=3)


def test_an_async_fixture_of_a_test_class_runs_on_the_test_instance(run_pytest):
    # as a synchronous fixture of the class does
    result = run_pytest(
        """
        import pytest
        from plait import coro

        class TestState:
            @pytest.fixture
            def sync_fix(self):
                self.sync_seen = True

            @pytest.fixture
            async def async_fix(self):
                await coro.sleep(0)
                self.async_seen = True
                return self

            async def test_sync_fixture(self, sync_fix):
                assert self.sync_seen

            async def test_async_fixture(self, async_fix):
                assert async_fix is self
                assert self.async_seen
        """
    )
    result.assert_outcomes(passed=2)


def test_tasks_a_test_leaves_running_are_cancelled_when_it_ends(run_pytest):
    result = run_pytest(
        """
        import socket
        import pytest
        from plait import coro

        CLEANED = []

        @pytest.fixture
        async def server():
            sock = coro.Socket(socket.socket())
            sock.bind(("127.0.0.1", 0))
            sock.listen()

            async def serve():
                try:
                    await sock.accept()
                finally:
                    await sock.close()
                    CLEANED.append("server")

            await coro.spawn(serve)
            yield sock
            CLEANED.append("fixture")

        async def test_leaves_a_server_in_accept(server):
            async def waiter():
                try:
                    await coro.Event().wait()
                finally:
                    CLEANED.append("waiter")

            await coro.spawn(waiter)

        @pytest.mark.plait(clock="mock")
        async def test_leaves_a_sleeper_on_a_stopped_clock():
            await coro.spawn(coro.sleep, 3600)

        def test_after():
            assert sorted(CLEANED) == ["fixture", "server", "waiter"]
        """,
        "-p",
        "no:randomly",
    )
    result.assert_outcomes(passed=3)


def test_a_test_stopped_by_pytest_timeout_reports_the_timeout_and_tears_down(run_pytest):
    # pytest-timeout's SIGALRM handler raises out of the kernel's wait: the async
    # fixture's teardown still runs in the kernel, and the kernel's fds are closed
    result = run_pytest(
        """
        import os
        import socket
        import pytest
        from plait import coro

        FDS = []
        TORN_DOWN = []

        def test_first():
            FDS.append(len(os.listdir("/proc/self/fd")))

        @pytest.fixture
        async def resource():
            yield "r"
            await coro.sleep(0)  # a teardown that awaits, as closing a stream does
            TORN_DOWN.append("resource")

        @pytest.mark.timeout(1, method="signal")
        async def test_hangs(resource):
            a, b = socket.socketpair()
            try:
                await coro.Socket(a).recv(1)  # nobody writes
            finally:
                a.close()
                b.close()

        def test_after():
            assert TORN_DOWN == ["resource"]
            assert len(os.listdir("/proc/self/fd")) == FDS[0]
        """,
        "-p",
        "no:randomly",
    )
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*test_hangs*Timeout*"])


def test_a_task_that_crashed_unjoined_fails_the_test_that_spawned_it(run_pytest):
    result = run_pytest(
        """
        from plait import coro

        async def checks():
            await coro.sleep(0)
            assert 1 + 1 == 3, "the spawned task's check"

        async def test_spawns_a_failing_check():
            await coro.spawn(checks)
            await coro.sleep(0.01)

        async def test_joins_it_and_expects_the_failure():
            task = await coro.spawn(checks)
            try:
                await task.join()
            except AssertionError:
                pass
        """
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines_random(
        [
            "*tasks of the test crashed and were never joined: task * (checks)*",
            "*AssertionError: the spawned task's check*",
        ]
    )
