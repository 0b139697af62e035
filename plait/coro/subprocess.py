"""Child programs for tasks: ``Popen`` with awaitable pipes, and ``run_process``.

``Popen(args, stdout=PIPE, ...)`` starts a program at once (the standard ``subprocess``
exec machinery does the fork and exec, so ``cwd``, ``env``, ``shell``, ``pass_fds`` and
the exec errors are exactly the standard ones: a missing program is a
``FileNotFoundError`` naming it). That machinery starts the child with ``vfork``, as
none of the options that rule it out (``preexec_fn``, ``user``, ``group``, ...) is
offered here: the child borrows the parent's memory instead of copying its page tables,
so the constructor blocks the kernel only until the child has called ``exec``, however
large the parent is. Everything after the start is plait's own:

- Pipes. Each ``PIPE`` is an ``os.pipe2`` made here; the child gets its end through the
  start, the parent's end is non-blocking and becomes ``stdin``/``stdout``/``stderr``, a
  :class:`~plait.coro.SocketStream` over a :class:`~plait.coro.Socket` whose "socket" is
  the pipe (``_PipeFile`` answers the three calls a ``Socket`` makes, ``recv``,
  ``recv_into`` and ``send``, with ``os.read``/``os.readv``/``os.write``). So a pipe is
  read and written by the very loops that serve sockets: ``read``, ``read_exactly``,
  ``readline``, ``async for line in p.stdout``, and ``write``, which returns once every
  byte is in the pipe (backpressure, no unbounded buffer). At the end of the child's
  output a read returns ``b""``; a write to a stdin the child closed (or left by
  exiting) raises ``BrokenPipeError`` naming the process.
- Waiting. The child is held by a :class:`~plait.process.child.DirectChild`: a *pidfd*,
  readable once the child has ended. ``await p.wait()`` waits for it with the kernel's
  read-wait trap, like any socket, then reaps the child (``waitpid``): no SIGCHLD
  handler, no thread. One task at a time waits on the pidfd; other waiters park and are
  woken by it. ``signal.pidfd_send_signal`` carries ``send_signal``/``terminate``/
  ``kill``, so a recycled pid can never be signalled.
- Timeouts. ``wait(timeout=)`` and ``communicate(timeout=)`` are the standard ones: the
  call raises ``subprocess.TimeoutExpired`` and the child goes on running. They are an
  ``ignore_after`` scope inside the call, so only their own expiry becomes
  ``TimeoutExpired``; ``communicate`` keeps its output lists and how much of its input
  went (``_output``, ``_sent``), and a later call goes on from there.
- Cancellation. A cancelled ``wait``, or one whose enclosing ``timeout_after`` expires,
  kills the child with SIGKILL and reaps it before the cancellation goes on: a task that
  stops waiting leaves no child running and no zombie. The reap after SIGKILL blocks the
  kernel for the moment the dying process takes to end (it runs no code of its own).
  ``communicate`` kills likewise on a cancellation or a failed pipe, and ``run_process``
  on any exception, its own timeout included, as ``subprocess.run`` does.

Ownership. Until the child is reaped the ``subprocess.Popen`` object that started it is
kept: were this ``Popen`` dropped unwaited, the standard object's finalizer warns and
reaps the child later, as it does for any abandoned child. Once plait reaped the child it
sets that object's ``returncode``, so it never waits on a pid that may have been reused.
The pipes belong to this object: ``async with Popen(...) as p:`` closes them at the end
and waits for the child (a cancellation there kills it).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess as _subprocess
import sys
from collections import deque
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

from plait.process.child import DirectChild

from . import traps
from .errors import ClosedResourceError, TaskCancelled
from .sockets import Socket, SocketStream
from .task import TaskGroup
from .timeouts import ignore_after

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

__all__ = ["Popen", "run_process"]

PIPE = _subprocess.PIPE
DEVNULL = _subprocess.DEVNULL
STDOUT = _subprocess.STDOUT

_Arg = str | bytes | os.PathLike


class _PipeFile:
    """The parent's end of a pipe, with the calls a :class:`Socket` makes on its socket."""

    __slots__ = ("_fd", "_what")

    def __init__(self, fd: int, what: str) -> None:
        self._fd = fd
        self._what = what

    def __repr__(self) -> str:
        return f"<pipe fd {self._fd}: {self._what}>"

    def fileno(self) -> int:
        return self._fd

    def setblocking(self, flag: bool) -> None:
        os.set_blocking(self._fd, flag)

    def recv(self, maxsize: int, flags: int = 0) -> bytes:
        return os.read(self._fd, maxsize)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        with memoryview(buffer).cast("B") as view:
            return os.readv(self._fd, [view[: nbytes or len(view)]])

    def send(self, data: Any, flags: int = 0) -> int:
        try:
            return os.write(self._fd, data)
        except BrokenPipeError:
            raise BrokenPipeError(
                errno.EPIPE, f"{self._what} is closed: the child closed it or has exited"
            ) from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self, _close: Any = os.close) -> None:
        if self._fd >= 0:  # a Popen dropped with its pipes open: close them, as files do
            _close(self._fd)


def _program(args: Any) -> str:
    first = args if isinstance(args, _Arg) else args[0]
    return os.fsdecode(first)


def _check_args(args: Any) -> None:
    if isinstance(args, _Arg):
        return
    if not isinstance(args, Sequence):
        raise TypeError(
            f"args must be a string or a sequence of str, bytes or os.PathLike (the program "
            f"and its arguments), not {type(args).__name__}"
        )
    if not args:
        raise ValueError("args is empty: give at least the program to run")
    for i, arg in enumerate(args):
        if not isinstance(arg, _Arg):
            raise TypeError(
                f"args[{i}] is {arg!r}: every argument must be str, bytes or os.PathLike"
            )


def _check_stream(name: str, value: Any) -> None:
    if value is None or hasattr(value, "fileno"):
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{name}={value!r}: give PIPE, DEVNULL, None, a file descriptor or a file object"
        )
    if value == STDOUT and name != "stderr":
        raise ValueError(f"{name}=STDOUT: only stderr can be sent to stdout")
    if value < 0 and value not in (PIPE, DEVNULL, STDOUT):
        raise ValueError(f"{name}={value}: not a file descriptor")


class Popen:
    """A running child program; ``stdin``/``stdout``/``stderr`` are awaitable streams.

    Starts the child at once (the constructor blocks the kernel until the child has
    called ``exec``, whatever the parent's size: see the module notes). Raises what the
    standard ``subprocess.Popen`` raises when the program cannot start
    (``FileNotFoundError`` naming a missing program or ``cwd``, ``PermissionError``,
    ...), ``TypeError``/``ValueError`` naming a bad argument.
    The streams carry bytes.

    >>> from plait.coro import run
    >>> async def main():
    ...     async with Popen(["sort"], stdin=PIPE, stdout=PIPE) as p:
    ...         await p.stdin.write(b"b\\na\\n")
    ...         await p.stdin.close()
    ...         return await p.stdout.read()
    >>> run(main)
    b'a\\nb\\n'
    """

    def __init__(
        self,
        args: _Arg | Sequence[_Arg],
        *,
        stdin: Any = None,
        stdout: Any = None,
        stderr: Any = None,
        cwd: _Arg | None = None,
        env: Mapping[str, str] | None = None,
        executable: _Arg | None = None,
        shell: bool = False,
        start_new_session: bool = False,
        pass_fds: Sequence[int] = (),
    ) -> None:
        _check_args(args)
        given = {"stdin": stdin, "stdout": stdout, "stderr": stderr}
        for name, value in given.items():
            _check_stream(name, value)
        self.args = args
        self.returncode: int | None = None
        self.stdin: SocketStream | None = None
        self.stdout: SocketStream | None = None
        self.stderr: SocketStream | None = None
        self._waiting = False  # a task waits on the pidfd
        self._waiters: deque = deque()
        self._output: tuple[list[bytes] | None, list[bytes] | None] | None = None
        self._input: memoryview | None = None  # communicate's input, of which _sent went
        self._sent = 0
        ours: dict[str, int] = {}
        theirs: list[int] = []
        try:
            for name, value in given.items():
                if isinstance(value, int) and value == PIPE:
                    r, w = os.pipe2(os.O_CLOEXEC)
                    ours[name], child_end = (w, r) if name == "stdin" else (r, w)
                    theirs.append(child_end)
                    given[name] = child_end
            self._starter = _subprocess.Popen(
                args,
                executable=executable,
                cwd=cwd,
                env=env,
                shell=shell,
                start_new_session=start_new_session,
                pass_fds=pass_fds,
                **given,
            )
            self.pid = self._starter.pid
            try:
                self._child = DirectChild(self.pid, holds_lifeline=False)
            except OSError:
                self._starter.returncode = -signal.SIGKILL  # DirectChild killed and reaped it
                raise
        except BaseException:
            for fd in ours.values():
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        for name, fd in ours.items():
            what = self._pipe_name(name)
            setattr(self, name, Socket(_PipeFile(fd, what), name=what).as_stream())

    def _pipe_name(self, name: str) -> str:
        return f"the {name} pipe of process {self.pid} ({_program(self.args)})"

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else f"returncode={self.returncode}"
        return f"<plait.coro.Popen {self.pid} {_program(self.args)!r} {state}>"

    def poll(self) -> int | None:
        """The exit code if the child has ended (reaping it), else ``None``; never blocks.

        A negative code is the signal that ended the child, as in ``subprocess``.
        """
        if self.returncode is None:
            code = self._child.poll()
            if code is None:
                return None
            self.returncode = self._starter.returncode = code
        if not self._waiting and self._child.sentinel >= 0:
            k = traps.state.kernel
            if k is not None:
                k.release_fd(self._child.sentinel)
            self._child.close()
        return self.returncode

    async def wait(self, timeout: float | None = None) -> int:
        """Block until the child has ended; return its exit code (see :meth:`poll`).

        Raises ``subprocess.TimeoutExpired`` if it has not ended after ``timeout``
        seconds, and leaves it running, as ``subprocess.Popen.wait`` does. A blocking
        point: if the task is cancelled (or an enclosing ``timeout_after`` expires) here,
        the child is killed (SIGKILL) and reaped before the cancellation goes on.
        """
        if timeout is not None:
            _check_timeout(timeout)
        try:
            if not await _within(timeout, self._ended()):
                raise _subprocess.TimeoutExpired(self.args, timeout)
        except TaskCancelled:
            self._kill_and_reap()
            raise
        return self.returncode

    async def _ended(self) -> None:
        """Wait until the child has ended and is reaped; a cancellation leaves it alone."""
        while self.poll() is None:
            if self._waiting:  # another task waits on the pidfd and wakes this one
                await traps.park(self._waiters, "PROCESS_WAIT")
                continue
            self._waiting = True
            try:
                await traps.read_wait(self._child.sentinel, self)
            finally:
                self._waiting = False
                k = traps.kernel()
                while self._waiters:
                    k.wake(self._waiters.popleft(), None)

    def _kill_and_reap(self) -> None:
        """SIGKILL the child and reap it; blocks only while the killed process ends."""
        if self.poll() is None:
            self._child.kill()
            self._child.wait()
            self.poll()

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the child, unless it has been reaped; never blocks."""
        self._child.send_signal(signum)

    def terminate(self) -> None:
        """SIGTERM the child (unless it has been reaped); does not wait."""
        self._child.terminate()

    def kill(self) -> None:
        """SIGKILL the child (unless it has been reaped); does not wait."""
        self._child.kill()

    async def communicate(
        self, input: bytes | None = None, timeout: float | None = None
    ) -> tuple[bytes | None, bytes | None]:
        """Write ``input`` to stdin and close it, read stdout and stderr to their end, and
        wait for the child; return ``(stdout, stderr)`` (``None`` for a stream that is not
        a pipe).

        Blocks until the child has ended and closed its output. After ``timeout`` seconds
        it raises ``subprocess.TimeoutExpired`` with the output so far and leaves the
        child running, as ``subprocess`` does: a later ``communicate()`` goes on where
        this one stopped (the rest of ``input`` included) and returns all the output.
        Any other failure, and a cancellation, kills the child (see :meth:`wait`).
        ``input`` needs ``stdin=PIPE`` (``ValueError``); a child that exits without
        reading all of it is not an error, as in ``subprocess``.
        """
        if timeout is not None:
            _check_timeout(timeout)
        if self._output is None:
            self._start_communication(input)
        elif input:
            raise ValueError("Cannot send input after starting communication")
        try:
            ended = await _within(timeout, self._exchange())
        except BaseExceptionGroup as group:
            self._kill_and_reap()
            if len(group.exceptions) != 1:
                raise
            # One pipe failed: raise its error as subprocess would, not a group of one.
            raise group.exceptions[0] from None
        except BaseException:
            self._kill_and_reap()
            raise
        out, err = self._output
        if not ended:
            raise _subprocess.TimeoutExpired(
                self.args, timeout, b"".join(out) if out else None, b"".join(err) if err else None
            )
        return _joined(out), _joined(err)

    def _start_communication(self, input: bytes | None) -> None:
        """Check ``communicate``'s first call; keep its input and make its output lists."""
        if input is not None:
            if isinstance(input, str):
                raise TypeError("input must be bytes (the streams carry bytes), not str")
            memoryview(input).release()  # TypeError naming the type, as subprocess raises
            if self.stdin is None:
                raise ValueError("communicate(input=...) needs a Popen made with stdin=PIPE")
        for name in ("stdin", "stdout", "stderr") if input is not None else ("stdout", "stderr"):
            stream = getattr(self, name)
            if stream is not None and stream.socket.fileno() < 0:
                raise ClosedResourceError(self._pipe_name(name))
        self._input = None if input is None else memoryview(input).cast("B")
        self._output = (None if self.stdout is None else [], None if self.stderr is None else [])

    async def _exchange(self) -> None:
        """Feed stdin, collect stdout and stderr, and wait for the child, all at once."""
        out, err = self._output
        async with TaskGroup() as g:
            if self.stdin is not None and self.stdin.socket.fileno() >= 0:
                await g.spawn(self._feed)
            if out is not None:
                await g.spawn(_collect, self.stdout, out)
            if err is not None:
                await g.spawn(_collect, self.stderr, err)
            await self._ended()

    async def _feed(self) -> None:
        """Write the rest of ``communicate``'s input to stdin, then close it (not when
        cancelled: a later ``communicate`` goes on from ``_sent``)."""
        stdin = self.stdin.socket
        data = self._input
        try:
            while data is not None and self._sent < len(data):
                with data[self._sent :] as rest:
                    self._sent += await stdin.send(rest)
        except BrokenPipeError:
            pass  # the child did not want it all
        stdin.close_nowait()

    async def __aenter__(self) -> Popen:
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, TaskCancelled):  # cancelled or timed out: waiting cannot end it
            self._kill_and_reap()
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                await stream.close()
        await self.wait()


async def run_process(
    args: _Arg | Sequence[_Arg],
    *,
    input: bytes | None = None,
    capture_output: bool = False,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
    check: bool = False,
    timeout: float | None = None,
    cwd: _Arg | None = None,
    env: Mapping[str, str] | None = None,
    **options: Any,
) -> _subprocess.CompletedProcess:
    """Run ``args`` to its end, like ``subprocess.run``; return a ``CompletedProcess``.

    Blocks the task (never the kernel) until the child has ended. ``input`` (bytes) is
    written to its stdin; ``capture_output=True`` (or ``stdout=PIPE``/``stderr=PIPE``)
    collects its output as bytes. Raises ``subprocess.CalledProcessError`` if ``check``
    and the exit code is not 0, ``subprocess.TimeoutExpired`` once ``timeout`` seconds
    passed, what ``Popen`` raises if the program cannot start, and ``ValueError`` for
    ``input`` with ``stdin`` or ``capture_output`` with ``stdout``/``stderr``. On a
    timeout, a cancellation or any error the child is killed and reaped first.
    ``options`` go to :class:`Popen` (``executable``, ``shell``, ``start_new_session``,
    ``pass_fds``).

    >>> import sys
    >>> from plait.coro import run
    >>> async def main():
    ...     done = await run_process([sys.executable, "-c", "print(6 * 7)"], capture_output=True)
    ...     return done.returncode, done.stdout
    >>> run(main)
    (0, b'42\\n')
    """
    if input is not None:
        if stdin is not None:
            raise ValueError("input and stdin cannot both be given: input goes to stdin")
        stdin = PIPE
    if capture_output:
        if stdout is not None or stderr is not None:
            raise ValueError("capture_output cannot be combined with stdout or stderr")
        stdout = stderr = PIPE
    if timeout is not None:
        _check_timeout(timeout)
    async with Popen(
        args, stdin=stdin, stdout=stdout, stderr=stderr, cwd=cwd, env=env, **options
    ) as p:
        try:
            output, errors = await p.communicate(input, timeout)
        except _subprocess.TimeoutExpired:
            p._kill_and_reap()
            out, err = p._output
            raise _subprocess.TimeoutExpired(args, timeout, _joined(out), _joined(err)) from None
        except BaseException:
            p._kill_and_reap()
            raise
    if check and p.returncode:
        raise _subprocess.CalledProcessError(p.returncode, args, output, errors)
    return _subprocess.CompletedProcess(args, p.returncode, output, errors)


def _check_timeout(timeout: Any) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds, not {timeout!r}")


async def _within(timeout: float | None, work: Coroutine[Any, Any, None]) -> bool:
    """Await ``work``; False if ``timeout`` seconds passed first (it is then cancelled)."""
    if timeout is None:
        await work
        return True
    async with ignore_after(timeout):
        await work
        return True
    return False


async def _collect(stream: SocketStream, chunks: list[bytes]) -> None:
    """Read ``stream`` to its end into ``chunks``."""
    while chunk := await stream.read(65536):
        chunks.append(chunk)


def _joined(chunks: list[bytes] | None) -> bytes | None:
    return None if chunks is None else b"".join(chunks)
