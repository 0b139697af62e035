"""Child programs for tasks: run_process beside subprocess.run, Popen's awaitable pipes,
waits on the pidfd, and cancellation that kills and reaps the child."""

from __future__ import annotations

import asyncio
import gc
import io
import math
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from unittest import mock

import pytest

from plait import coro
from plait.process.child import DirectChild
from tests.support import child_pids, open_fds, run_in_child

pytestmark = [pytest.mark.usefixtures("no_leaks"), pytest.mark.timeout(60)]

PY = sys.executable
PIPE = subprocess.PIPE


def python(code: str) -> list[str]:
    return [PY, "-c", code]


@pytest.fixture(params=["subprocess", "plait"])
def run(request):
    """``subprocess.run``, or the same call made with ``coro.run_process`` in a kernel."""
    if request.param == "subprocess":
        return subprocess.run

    def run_process(args, **kwargs):
        return coro.run(coro.run_process(args, **kwargs))

    return run_process


# -- the same scenarios on subprocess.run and coro.run_process ------------------------


def test_output_error_and_exit_code_are_captured(run):
    args = ["sh", "-c", "echo out; echo err >&2; exit 3"]
    done = run(args, capture_output=True)
    assert isinstance(done, subprocess.CompletedProcess)
    assert (done.args, done.returncode, done.stdout, done.stderr) == (args, 3, b"out\n", b"err\n")


def test_a_megabyte_goes_through_cat_both_ways_at_once(run):
    data = bytes(range(256)) * 4096
    done = run(["cat"], input=data, stdout=PIPE)
    assert (done.returncode, done.stdout, done.stderr) == (0, data, None)


def test_stderr_joins_stdout_and_cwd_and_env_reach_the_child(run, tmp_path):
    args = ["sh", "-c", 'echo "$GREETING"; pwd; echo oops >&2']
    env = {"GREETING": "hello", "PATH": os.environ["PATH"]}
    done = run(args, stdout=PIPE, stderr=subprocess.STDOUT, cwd=tmp_path, env=env)
    assert done.stdout == f"hello\n{tmp_path}\noops\n".encode()
    assert done.stderr is None


def test_check_raises_called_process_error_with_the_output(run):
    args = ["sh", "-c", "echo partial; exit 7"]
    with pytest.raises(subprocess.CalledProcessError) as caught:
        run(args, stdout=PIPE, check=True)
    e = caught.value
    assert (e.returncode, e.cmd, e.output) == (7, args, b"partial\n")
    assert str(e) == f"Command '{args}' returned non-zero exit status 7."


def test_a_child_killed_by_a_signal_has_a_negative_exit_code(run):
    assert run(["sh", "-c", "kill -9 $$"]).returncode == -signal.SIGKILL


def test_a_missing_program_is_a_file_not_found_error_naming_it(run):
    with pytest.raises(FileNotFoundError) as caught:
        run(["/nonexistent/program-of-plait", "arg"])
    assert caught.value.filename == "/nonexistent/program-of-plait"
    assert "program-of-plait" in str(caught.value)


def test_a_timeout_kills_the_child_and_reports_the_output_so_far(run):
    args = ["sh", "-c", "echo started; echo warming up >&2; exec sleep 60"]
    with pytest.raises(subprocess.TimeoutExpired) as caught:
        run(args, capture_output=True, timeout=1.5)
    e = caught.value
    assert (e.cmd, e.stdout, e.stderr) == (args, b"started\n", b"warming up\n")
    assert str(e).startswith(f"Command '{args}' timed out after ")
    # no_leaks: the child is gone and reaped


def test_input_with_stdin_and_capture_output_with_stdout_are_refused(run):
    with pytest.raises(ValueError, match="stdin"):
        run(["cat"], input=b"x", stdin=subprocess.DEVNULL)
    with pytest.raises(ValueError, match="capture_output"):
        run(["cat"], capture_output=True, stdout=PIPE)


# -- Popen: the pipes ------------------------------------------------------------------


def test_lines_go_back_and_forth_through_the_pipes():
    upper = python("import sys\nfor line in sys.stdin: print(line.upper(), end='', flush=True)")

    async def main():
        async with coro.Popen(upper, stdin=PIPE, stdout=PIPE) as p:
            answers = []
            for word in (b"one\n", b"two\n", b"three\n"):
                await p.stdin.write(word)
                answers.append(await p.stdout.readline())
            await p.stdin.close()
            assert await p.stdout.read() == b""
            return answers, await p.wait()

    assert coro.run(main) == ([b"ONE\n", b"TWO\n", b"THREE\n"], 0)


def test_the_socket_under_a_pipe_stream_reads_into_a_buffer():
    async def main():
        async with coro.Popen(["printf", "abcdef"], stdout=PIPE) as p:
            buffer = bytearray(4)
            first = await p.stdout.socket.recv_into(buffer)
            rest = await p.stdout.read()
        return bytes(buffer[:first]), rest

    assert coro.run(main) == (b"abcd", b"ef")  # printf writes once: 6 bytes at a time


def test_output_lines_are_iterated_until_the_end():
    async def main():
        async with coro.Popen(["sh", "-c", "seq 1 5; echo tail >&2"], stdout=PIPE) as p:
            lines = [line async for line in p.stdout]
        return lines, p.returncode, p.stderr

    assert coro.run(main) == ([b"1\n", b"2\n", b"3\n", b"4\n", b"5\n"], 0, None)


def test_communicate_feeds_stdin_and_collects_both_outputs():
    code = "import sys; print(len(sys.stdin.buffer.read())); print('e', file=sys.stderr)"

    async def main():
        async with coro.Popen(python(code), stdin=PIPE, stdout=PIPE, stderr=PIPE) as p:
            return await p.communicate(b"z" * 300_000), p.returncode

    assert coro.run(main) == ((b"300000\n", b"e\n"), 0)


def test_a_child_that_closes_its_pipes_early_gives_eof_and_broken_pipe():
    # The child runs on until the test signals it (a sleep could end first on a slow machine).
    code = (
        "import os, signal, sys; signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1}); "
        "os.close(0); os.close(1); sys.exit(0 if signal.sigtimedwait({signal.SIGUSR1}, 30) else 1)"
    )

    async def main():
        async with coro.Popen(python(code), stdin=PIPE, stdout=PIPE) as p:
            assert await p.stdout.read() == b""  # EOF while the child still runs
            assert p.poll() is None
            closed = f"stdin pipe of process {p.pid} .* is closed"
            with pytest.raises(BrokenPipeError, match=closed):
                await p.stdin.write(b"nobody reads this\n")
            p.send_signal(signal.SIGUSR1)
            assert await p.wait() == 0

    coro.run(main)


def test_writing_to_a_pipe_this_side_closed_names_the_pipe():
    async def main():
        async with coro.Popen(["cat"], stdin=PIPE) as p:
            await p.stdin.close()
            with pytest.raises(coro.ClosedResourceError, match=f"stdin pipe of process {p.pid}"):
                await p.stdin.write(b"late")
        return p.returncode

    assert coro.run(main) == 0


# -- Popen: waiting, signals, cancellation ---------------------------------------------


def test_wait_on_the_pidfd_lets_the_other_tasks_run_without_a_thread_or_sigchld_handler():
    ticks = []
    handler = signal.getsignal(signal.SIGCHLD)

    async def ticker():
        while True:
            ticks.append(threading.active_count())
            await coro.sleep(0.005)

    async def main():
        t = await coro.spawn(ticker)
        p = coro.Popen(python("import time; time.sleep(0.3)"))
        code = await p.wait()
        await t.cancel()
        return code, signal.getsignal(signal.SIGCHLD)

    assert coro.run(main) == (0, handler)
    assert ticks and set(ticks) == {threading.active_count()}


def test_several_tasks_wait_for_one_child():
    async def main():
        p = coro.Popen(["sh", "-c", "sleep 0.1; exit 4"])
        async with coro.TaskGroup() as g:
            waits = [await g.spawn(p.wait) for _ in range(3)]
        return [t.result for t in waits], p.poll()

    assert coro.run(main) == ([4, 4, 4], 4)


def test_terminate_and_send_signal_reach_the_child():
    async def main():
        p = coro.Popen(["sleep", "60"])
        p.terminate()
        first = await p.wait()
        q = coro.Popen(["sleep", "60"])
        q.send_signal(signal.SIGUSR1)
        second = await q.wait()
        q.kill()  # reaped already: nothing to signal, no error
        return first, second

    assert coro.run(main) == (-signal.SIGTERM, -signal.SIGUSR1)


def test_cancelling_a_waiting_task_kills_and_reaps_the_child():
    async def waiter(p):
        await p.wait()

    async def main():
        p = coro.Popen(["sleep", "60"])
        t = await coro.spawn(waiter, p)
        await coro.sleep(0.05)
        await t.cancel()
        return p.pid, p.returncode, t.cancelled

    pid, code, cancelled = coro.run(main)
    assert (code, cancelled) == (-signal.SIGKILL, True)
    assert pid not in child_pids()  # reaped: not even a zombie
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_a_timeout_around_wait_or_run_process_kills_the_child():
    async def main():
        p = coro.Popen(["sleep", "60"])
        with pytest.raises(coro.TaskTimeout):
            async with coro.timeout_after(0.05):
                await p.wait()
        assert p.returncode == -signal.SIGKILL
        t = await coro.spawn(coro.run_process, ["sleep", "60"])
        await coro.sleep(0.05)
        await t.cancel()
        return t.cancelled, child_pids()

    assert coro.run(main) == (True, set())


# -- timeouts of wait and communicate, beside subprocess.Popen's ----------------------


def test_wait_with_a_timeout_raises_timeout_expired_and_leaves_the_child_running():
    args = ["sh", "-c", "read line; exit 5"]  # runs until its stdin has a line

    def standard():
        with subprocess.Popen(args, stdin=PIPE) as p:
            with pytest.raises(subprocess.TimeoutExpired) as caught:
                p.wait(timeout=0.1)
            running = p.poll() is None
            p.stdin.write(b"go\n")
            p.stdin.close()
            return caught.value, running, p.wait(timeout=30)

    async def plait():
        async with coro.Popen(args, stdin=PIPE) as p:
            with pytest.raises(subprocess.TimeoutExpired) as caught:
                await p.wait(timeout=0.1)
            running = p.poll() is None
            await p.stdin.write(b"go\n")
            await p.stdin.close()
            return caught.value, running, await p.wait(timeout=30)

    def seen(e, running, code):
        return type(e), e.cmd, e.timeout, e.output, str(e), running, code

    assert (
        seen(*coro.run(plait))
        == seen(*standard())
        == (
            subprocess.TimeoutExpired,
            args,
            0.1,
            None,
            f"Command '{args}' timed out after 0.1 seconds",
            True,
            5,
        )
    )


def go_when_told(code: str, go_r: int) -> list[str]:
    """A python child that runs ``code`` after the test writes a byte to ``go_r``."""
    return [PY, "-c", f"import os, sys; os.read(int(sys.argv[1]), 1)\n{code}", str(go_r)]


def test_communicate_with_a_timeout_leaves_the_child_running_and_goes_on_later():
    # The child reads all its input (it fits in the pipe), then waits for the test's go.
    args = python(
        "import os, sys; n = len(sys.stdin.buffer.read()); os.read(int(sys.argv[1]), 1); "
        "print(n); print('e', file=sys.stderr)"
    )
    data = b"x" * 1000

    def standard(go_r, go_w):
        with subprocess.Popen(
            [*args, str(go_r)], stdin=PIPE, stdout=PIPE, stderr=PIPE, pass_fds=[go_r]
        ) as p:
            os.close(go_r)
            with pytest.raises(subprocess.TimeoutExpired) as caught:
                p.communicate(data, timeout=0.2)
            running = p.poll() is None
            with pytest.raises(ValueError) as again:
                p.communicate(b"more")
            os.write(go_w, b"g")
            return caught.value, running, str(again.value), p.communicate(timeout=30), p.returncode

    async def plait(go_r, go_w):
        async with coro.Popen(
            [*args, str(go_r)], stdin=PIPE, stdout=PIPE, stderr=PIPE, pass_fds=[go_r]
        ) as p:
            os.close(go_r)
            with pytest.raises(subprocess.TimeoutExpired) as caught:
                await p.communicate(data, timeout=0.2)
            running = p.poll() is None
            with pytest.raises(ValueError) as again:
                await p.communicate(b"more")
            os.write(go_w, b"g")
            return (
                caught.value,
                running,
                str(again.value),
                await p.communicate(timeout=30),
                p.returncode,
            )

    def seen(e, running, again, outputs, code):
        return (
            e.cmd[:3],
            e.timeout,
            e.stdout,
            e.stderr,
            str(e) == f"Command '{e.cmd}' timed out after 0.2 seconds",
            running,
            again,
            outputs,
            code,
        )

    results = []
    for scenario in (standard, lambda r, w: coro.run(plait, r, w)):
        go_r, go_w = os.pipe()
        try:
            results.append(seen(*scenario(go_r, go_w)))
        finally:
            os.close(go_w)
    assert (
        results[0]
        == results[1]
        == (
            args,
            0.2,
            None,
            None,
            True,
            True,
            "Cannot send input after starting communication",
            (b"1000\n", b"e\n"),
            0,
        )
    )


def test_communicate_after_a_timeout_sends_the_rest_of_the_input():
    # Unlike subprocess, whose second communicate() leaves the rest unsent: the child
    # reads nothing until told, so most of the megabyte is still to go at the timeout.
    data = bytes(range(256)) * 4096
    code = "sys.stdout.buffer.write(sys.stdin.buffer.read())"

    async def main(go_r, go_w):
        async with coro.Popen(
            go_when_told(code, go_r), stdin=PIPE, stdout=PIPE, pass_fds=[go_r]
        ) as p:
            os.close(go_r)
            with pytest.raises(subprocess.TimeoutExpired):
                await p.communicate(data, timeout=0.2)
            os.write(go_w, b"g")
            return await p.communicate(timeout=30)

    go_r, go_w = os.pipe()
    try:
        assert coro.run(main, go_r, go_w) == (data, None)
    finally:
        os.close(go_w)


def test_a_timeout_around_wait_with_a_timeout_still_kills_the_child():
    async def main():
        p = coro.Popen(["sleep", "60"])
        with pytest.raises(coro.TaskTimeout):
            async with coro.timeout_after(0.05):
                await p.wait(timeout=30)
        return p.returncode

    assert coro.run(main) == -signal.SIGKILL


# -- bad input -------------------------------------------------------------------------


def test_a_missing_program_fails_its_task_only():
    async def main():
        done = []

        async def other():
            await coro.sleep(0.05)
            done.append("other task ran")

        t = await coro.spawn(other)
        with pytest.raises(FileNotFoundError, match="no-such-program-xyz"):
            coro.Popen(["no-such-program-xyz"], stdin=PIPE, stdout=PIPE, stderr=PIPE)
        with pytest.raises(FileNotFoundError, match="/no/such/dir"):
            await coro.run_process(["true"], cwd="/no/such/dir")
        await t.join()
        return done, (await coro.run_process(["true"])).returncode

    assert coro.run(main) == (["other task ran"], 0)  # no_leaks: no pipe fd left open


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"args": []}, ValueError, "args is empty"),
        ({"args": ["echo", 3]}, TypeError, r"args\[1\] is 3"),
        ({"args": 42}, TypeError, "args must be"),
        ({"args": ["cat"], "stdout": subprocess.STDOUT}, ValueError, "stdout=STDOUT"),
        ({"args": ["cat"], "stdin": "file.txt"}, TypeError, "stdin='file.txt'"),
        ({"args": ["cat"], "stderr": True}, TypeError, "stderr=True"),
        ({"args": ["cat"], "stdin": -7}, ValueError, "stdin=-7"),
        ({"args": ["cat"], "bufsize": 1}, TypeError, "bufsize"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        coro.Popen(**kwargs)


def test_bad_arguments_of_run_process_and_communicate_are_named():
    async def main():
        with pytest.raises(TypeError, match="timeout must be a number"):
            await coro.run_process(["true"], timeout="soon")
        with pytest.raises(TypeError, match="input must be bytes"):
            await coro.run_process(["cat"], input="text")
        async with coro.Popen(["true"]) as p:
            with pytest.raises(ValueError, match="stdin=PIPE"):
                await p.communicate(b"data")

    coro.run(main)


def test_a_bad_input_is_the_type_error_subprocess_run_raises(run):
    with pytest.raises(TypeError, match="bytes-like object is required, not 'int'"):
        run(["cat"], input=12345, capture_output=True)
    # no_leaks: the child, if one was started, is killed and reaped


def test_communicate_names_a_pipe_the_user_closed_and_leaves_the_child_alone():
    async def main():
        async with coro.Popen(["cat"], stdin=PIPE, stdout=PIPE) as p:
            await p.stdout.close()
            with pytest.raises(coro.ClosedResourceError, match="stdout pipe of process"):
                await p.communicate(b"x")
            assert p.returncode is None
            await p.stdin.close()  # cat sees the end of its input and exits
        return p.returncode

    assert coro.run(main) == 0


def test_an_error_of_one_pipe_in_communicate_is_not_a_group():
    async def main():
        async with coro.Popen(["sleep", "20"], stdout=PIPE) as p:
            stream = p.stdout

            async def close_soon():
                await coro.sleep(0.05)
                await stream.close()

            await coro.spawn(close_soon)
            with pytest.raises(coro.ClosedResourceError, match="closed while waited on"):
                await p.communicate()  # its wait is cancelled: the child is killed
        return p.returncode

    assert coro.run(main) == -signal.SIGKILL


def test_a_timeout_around_async_with_popen_kills_the_child():
    async def main():
        with pytest.raises(coro.TaskTimeout):
            async with coro.timeout_after(0.2):
                async with coro.Popen(["sleep", "20"], stdout=PIPE) as p:
                    await p.stdout.read()  # waits for output that never comes
        return p.returncode

    assert coro.run(main) == -signal.SIGKILL  # not 0 after 20 s: killed, and reaped


# -- what subprocess does in the corners ----------------------------------------------


def test_a_timeout_before_any_output_reports_none(run):
    with pytest.raises(subprocess.TimeoutExpired) as caught:
        run(["sleep", "60"], capture_output=True, timeout=0.2)
    assert (caught.value.stdout, caught.value.stderr) == (None, None)


def test_communicate_closes_each_output_pipe_at_its_end():
    # The child writes, closes stdout, says so on `ready`, and finishes when told.
    code = (
        "import os, sys; print('out', flush=True); os.close(1); os.write(int(sys.argv[2]), b'r'); "
        "os.read(int(sys.argv[1]), 1); print('err', file=sys.stderr)"
    )

    def standard(go_r, go_w, ready_r, ready_w):
        before = open_fds()
        p = subprocess.Popen(
            [*python(code), str(go_r), str(ready_w)],
            stdout=PIPE,
            stderr=PIPE,
            pass_fds=[go_r, ready_w],
        )
        os.read(ready_r, 1)
        with pytest.raises(subprocess.TimeoutExpired) as caught:
            p.communicate(timeout=0.2)
        left_then = len(open_fds() - before)
        os.write(go_w, b"g")
        return caught.value.stdout, left_then, p.communicate(timeout=30), open_fds() - before

    async def plait(go_r, go_w, ready_r, ready_w):
        before = open_fds()
        p = coro.Popen(
            [*python(code), str(go_r), str(ready_w)],
            stdout=PIPE,
            stderr=PIPE,
            pass_fds=[go_r, ready_w],
        )
        os.read(ready_r, 1)
        with pytest.raises(subprocess.TimeoutExpired) as caught:
            await p.communicate(timeout=0.2)
        left_then = len(open_fds() - before) - 1  # the pidfd, which subprocess has not
        os.write(go_w, b"g")
        return caught.value.stdout, left_then, await p.communicate(timeout=30), open_fds() - before

    results = []
    for scenario in (standard, lambda *fds: coro.run(plait, *fds)):
        go_r, go_w = os.pipe()
        ready_r, ready_w = os.pipe()
        try:
            results.append(scenario(go_r, go_w, ready_r, ready_w))
        finally:
            for fd in (go_r, go_w, ready_r, ready_w):
                os.close(fd)
    # At the timeout only stderr is open; at the end no pipe is, though p is still alive.
    assert results[0] == results[1] == (b"out\n", 1, (b"out\n", b"err\n"), set())


def test_communicate_lets_go_of_a_bytearray_input():
    def standard():
        data = bytearray(b"hello\n")
        p = subprocess.Popen(["cat"], stdin=PIPE, stdout=PIPE)
        output = p.communicate(data)
        data.extend(b"more")  # BufferError while communicate holds on to it
        return output, bytes(data)

    async def plait():
        data = bytearray(b"hello\n")
        async with coro.Popen(["cat"], stdin=PIPE, stdout=PIPE) as p:
            output = await p.communicate(data)
            data.extend(b"more")
            # A communicate that is cancelled kills the child, and lets go too.
            big = bytearray(4 << 20)  # more than the pipe holds: still going when cancelled
            async with coro.Popen(["sleep", "60"], stdin=PIPE) as q:
                with pytest.raises(coro.TaskTimeout):
                    async with coro.timeout_after(0.1):
                        await q.communicate(big)
            big.extend(b"more")
            assert q.returncode == -signal.SIGKILL
        return output, bytes(data)

    assert coro.run(plait) == standard() == ((b"hello\n", None), b"hello\nmore")


def test_a_pipe_used_the_wrong_way_round_is_an_unsupported_operation_naming_it():
    def standard():
        with subprocess.Popen(["cat"], stdin=PIPE, stdout=PIPE) as p:
            errors = []
            for call in (lambda: p.stdout.write(b"x"), lambda: p.stdin.read(10)):
                with pytest.raises(io.UnsupportedOperation) as caught:
                    call()
                errors.append(type(caught.value))
            p.stdin.close()
        return errors, p.returncode

    async def plait():
        async with coro.Popen(["cat"], stdin=PIPE, stdout=PIPE) as p:
            errors = []
            for call, name in (
                (lambda: p.stdout.write(b"x"), "stdout"),
                (lambda: p.stdin.read(10), "stdin"),
            ):
                with pytest.raises(
                    io.UnsupportedOperation, match=f"{name} pipe of process {p.pid}"
                ):
                    await call()
                errors.append(io.UnsupportedOperation)
            await p.stdin.close()
        return errors, p.returncode

    assert coro.run(plait) == standard() == ([io.UnsupportedOperation] * 2, 0)


def lost_statuses():
    """With SIGCHLD ignored the system reaps each child as it ends, and its exit status is
    lost: what ``subprocess`` and plait report then, side by side."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    args = ["sh", "-c", "echo out; exit 3"]
    standard = subprocess.run(args, capture_output=True, check=True)
    killed = subprocess.Popen(["sleep", "60"])
    killed.kill()
    seen = {"standard": (standard.returncode, standard.stdout, killed.wait(timeout=30))}

    # A child reaped before plait could open its pidfd: wait until the system reaped it.
    pidfd_open = os.pidfd_open

    def late_pidfd_open(pid, flags=0):
        while os.path.exists(f"/proc/{pid}"):
            time.sleep(0.001)
        return pidfd_open(pid, flags)

    async def plait():
        done = await coro.run_process(args, capture_output=True, check=True)
        p = coro.Popen(["sleep", "60"])
        p.kill()
        with mock.patch.object(os, "pidfd_open", late_pidfd_open):
            early = coro.Popen(["true"])
        return (done.returncode, done.stdout, await p.wait()), await early.wait(), early.poll()

    seen["plait"] = coro.run(plait)
    return seen


def test_a_status_the_system_reaped_away_is_exit_code_0_as_in_subprocess():
    assert run_in_child(lost_statuses) == {
        "standard": (0, b"out\n", 0),
        "plait": ((0, b"out\n", 0), 0, 0),
    }


# -- usage errors leave the child alone ------------------------------------------------


def test_a_nan_timeout_is_refused_before_anything_starts():
    async def main():
        async with coro.Popen(["cat"], stdin=PIPE, stdout=PIPE) as p:
            for call in (
                lambda: p.wait(timeout=math.nan),
                lambda: p.communicate(b"hi", timeout=math.nan),
            ):
                with pytest.raises(
                    ValueError, match="timeout must be a number of seconds, not nan"
                ):
                    await call()
            running = p.returncode
            output = await p.communicate(b"still here\n")
        return running, output

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = coro.run(main)
        gc.collect()
    assert result == (None, (b"still here\n", None))
    assert [str(w.message) for w in seen] == []  # no "coroutine ... was never awaited"


def test_wait_and_communicate_outside_the_kernel_raise_and_leave_the_child_alone():
    p = coro.Popen(["cat"], stdin=PIPE, stdout=PIPE)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for call in (lambda: p.wait(timeout=1), lambda: p.communicate(b"x")):
            with pytest.raises(coro.NoKernelError):
                asyncio.run(call())
        gc.collect()
    assert p.returncode is None
    assert [str(w.message) for w in seen] == []

    async def finish():
        return await p.communicate(b"done\n")

    assert coro.run(finish) == (b"done\n", None)


def test_communicate_beside_another_reader_names_the_pipe_and_leaves_the_child_alone():
    async def main(go_r, go_w):
        async with coro.Popen(
            go_when_told("print('late')", go_r), stdout=PIPE, pass_fds=[go_r]
        ) as p:
            reader = await coro.spawn(p.stdout.read)  # waits: nothing comes before the go
            await coro.sleep(0)
            with pytest.raises(coro.ResourceBusy, match=f"stdout pipe of process {p.pid}"):
                await p.communicate()
            running = p.returncode
            os.write(go_w, b"g")
            return running, await reader.join(), await p.wait()

    go_r, go_w = os.pipe()
    try:
        assert coro.run(main, go_r, go_w) == (None, b"late\n", 0)
    finally:
        os.close(go_r)
        os.close(go_w)


# -- a killed child is reaped through the kernel ---------------------------------------


def test_a_cancelled_wait_reaps_the_killed_child_without_blocking_the_kernel(monkeypatch):
    blocking_waits = []
    monkeypatch.setattr(
        DirectChild, "wait", lambda self, timeout=None: blocking_waits.append(self.pid)
    )

    async def main():
        p = coro.Popen(["sleep", "60"])
        t = await coro.spawn(p.wait)
        await coro.sleep(0)  # one step: the wait is on the child's pidfd
        await t.cancel()
        return t.cancelled, p.returncode, p.pid

    cancelled, code, pid = coro.run(main)
    assert (cancelled, code, blocking_waits) == (True, -signal.SIGKILL, [])
    assert pid not in child_pids()  # reaped: not even a zombie


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
def test_a_block_left_by_keyboardinterrupt_or_systemexit_kills_the_child(error):
    # waiting for a child that was not asked to end could last forever (subprocess waits
    # 0.25 s for it on KeyboardInterrupt and leaves it running)
    seen = {}

    async def main():
        async with coro.Popen(["sleep", "60"]) as p:
            seen["p"] = p
            raise error

    with pytest.raises(error):
        coro.run(main)
    p = seen["p"]
    assert p.returncode == -signal.SIGKILL
    assert p.pid not in child_pids()
