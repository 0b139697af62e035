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
  exiting) raises ``BrokenPipeError`` naming the process. A pipe goes one way: reading
  stdin or writing stdout raises ``io.UnsupportedOperation``, as in ``subprocess``.
- Waiting. The child is held by a :class:`~plait.process.child.DirectChild`: a *pidfd*,
  readable once the child has ended. ``await p.wait()`` waits for it with the kernel's
  read-wait trap, like any socket, then reaps the child (``waitpid``): no SIGCHLD
  handler, no thread. One task at a time waits on the pidfd; other waiters park and are
  woken by it. ``signal.pidfd_send_signal`` carries ``send_signal``/``terminate``/
  ``kill``, so a recycled pid can never be signalled. If something else reaps the
  child (SIGCHLD set to SIG_IGN makes the system do it, or an ``os.wait()`` elsewhere),
  its status is lost and its exit code is 0, as ``subprocess`` reports it; that holds for
  a child reaped before its pidfd could be opened too, whose pid is then never signalled.
- Timeouts. ``wait(timeout=)`` and ``communicate(timeout=)`` are the standard ones: the
  call raises ``subprocess.TimeoutExpired`` and the child goes on running. They are an
  ``ignore_after`` scope inside the call, so only their own expiry becomes
  ``TimeoutExpired``; ``communicate`` keeps its output lists and how much of its input
  went (``_output``, ``_sent``), and a later call goes on from there. A NaN timeout is
  a ``ValueError`` before anything starts; a negative one has passed already.
- Cancellation. A cancelled ``wait``, or one whose enclosing ``timeout_after`` expires,
  kills the child with SIGKILL and reaps it before the cancellation goes on: a task that
  stops waiting leaves no child running and no zombie. After the SIGKILL the task waits
  for the pidfd through the kernel, as ``wait`` does, while the dying process frees its
  memory (a large one takes a while), so the other tasks run meanwhile; a cancellation
  that comes during that wait is put off to the task's next blocking point.
  ``communicate`` kills likewise on a cancellation or a failed pipe, and ``run_process``
  on any exception, its own timeout included, as ``subprocess.run`` does. A mistake of
  the caller's does not kill: a bad timeout, a call outside the kernel, or another task
  reading (writing) a pipe ``communicate`` needs, which is ``ResourceBusy`` naming the
  pipe and leaves ``communicate`` where a timeout would.

Ownership. Until the child is reaped the ``subprocess.Popen`` object that started it is
kept: were this ``Popen`` dropped unwaited, the standard object's finalizer warns and
reaps the child later, as it does for any abandoned child. Once plait reaped the child it
sets that object's ``returncode``, so it never waits on a pid that may have been reused.
The pipes belong to this object: ``async with Popen(...) as p:`` closes them at the end
and waits for the child (a cancellation, ``KeyboardInterrupt`` or ``SystemExit`` there
kills it), and ``communicate`` closes each output pipe it read to the end, as
``subprocess`` does. ``communicate``'s input is held as a memoryview until it has all
gone (or can no longer go), then released, so a ``bytearray`` given as input can change
size again.
"""

from __future__ import annotations

import errno
import io
import os
import signal
import subprocess as _subprocess
import sys
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from plait.process.child import ChildHandle, DirectChild

from . import traps
from .errors import ClosedResourceError, ResourceBusy, TaskCancelled
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
    """The parent's end of a pipe, with the calls a :class:`Socket` makes on its socket.

    A pipe goes one way: ``_ReadEnd`` (the child's stdout or stderr) and ``_WriteEnd``
    (its stdin) each refuse the other direction with ``io.UnsupportedOperation`` naming
    the pipe, as the standard ``subprocess`` file objects do.
    """

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

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self, _close: Any = os.close) -> None:
        if self._fd >= 0:  # a Popen dropped with its pipes open: close them, as files do
            _close(self._fd)


class _ReadEnd(_PipeFile):
    """The parent's end of the child's stdout or stderr."""

    __slots__ = ()

    def recv(self, maxsize: int, flags: int = 0) -> bytes:
        return os.read(self._fd, maxsize)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        with memoryview(buffer).cast("B") as view:
            return os.readv(self._fd, [view[: nbytes or len(view)]])

    def send(self, *args: Any) -> int:
        raise io.UnsupportedOperation(
            f"cannot write to {self._what}: it carries the child's output"
        )


class _WriteEnd(_PipeFile):
    """The parent's end of the child's stdin."""

    __slots__ = ()

    def recv(self, *args: Any) -> Any:
        raise io.UnsupportedOperation(
            f"cannot read from {self._what}: it carries the child's input"
        )

    recv_into = recv

    def send(self, data: Any, flags: int = 0) -> int:
        try:
            return os.write(self._fd, data)
        except BrokenPipeError:
            raise BrokenPipeError(
                errno.EPIPE, f"{self._what} is closed: the child closed it or has exited"
            ) from None


class _LostChild(ChildHandle):
    """A child that ended and was reaped behind our back (SIGCHLD ignored, or an
    ``os.wait()`` elsewhere) before a pidfd could watch it. Its status is lost: its exit
    code is 0, as ``subprocess`` reports it; its pid is never signalled (another process
    may have it now)."""

    returncode = 0

    def poll(self) -> int:
        return 0

    def send_signal(self, signum: int) -> None:
        pass


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
            self._child: ChildHandle
            try:
                self._child = DirectChild(self.pid, holds_lifeline=False, lost_exitcode=0)
            except ProcessLookupError:
                self._child = _LostChild()
                self._starter.returncode = 0  # so its finalizer never waits on the pid
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
            end = _WriteEnd(fd, what) if name == "stdin" else _ReadEnd(fd, what)
            setattr(self, name, Socket(end, name=what).as_stream())

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
        _check_timeout(timeout)
        traps.kernel()  # NoKernelError outside the kernel, before anything is under way
        try:
            if not await _within(timeout, self._ended):
                raise _subprocess.TimeoutExpired(self.args, timeout)
        except TaskCancelled:
            await self._kill_and_reap()
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

    async def _kill_and_reap(self) -> None:
        """SIGKILL the child and reap it once it has ended.

        The killed process may take a while to end (it frees its memory first): the task
        waits for the pidfd like ``wait``, so the other tasks run meanwhile, and a
        cancellation that comes then does not cut the wait short: it is delivered at the
        task's next blocking point, once the child is reaped. Where no kernel runs any more
        (it closes a task that never finished) the wait blocks instead.
        """
        self._drop_input()  # nothing more goes to the child
        if self.poll() is not None:
            return
        self._child.kill()
        if traps.state.kernel is None:
            self._child.wait()
            self.poll()
            return
        postponed = []
        while self.poll() is None:
            try:
                await self._ended()
            except TaskCancelled as e:
                postponed.append(e)
        k = traps.kernel()
        for cancellation in postponed:
            k.cancel(k.current, cancellation)

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
        _check_timeout(timeout)
        traps.kernel()  # NoKernelError outside the kernel, before anything is under way
        if self._output is None:
            self._start_communication(input)
        elif input:
            raise ValueError("Cannot send input after starting communication")
        try:
            ended = await _within(timeout, self._exchange)
        except BaseExceptionGroup as group:
            if len(group.exceptions) != 1:
                await self._kill_and_reap()
                raise
            # One pipe failed: raise its error as subprocess would, not a group of one.
            # Another task using the pipe is the caller's mistake, not the child's: the
            # child goes on, and a later call goes on from here, as after a timeout.
            error = group.exceptions[0]
            if not isinstance(error, ResourceBusy):
                await self._kill_and_reap()
            raise error from None
        except BaseException:
            await self._kill_and_reap()
            raise
        out, err = self._output
        if not ended:
            raise _subprocess.TimeoutExpired(
                self.args, timeout, b"".join(out) if out else None, b"".join(err) if err else None
            )
        self._drop_input()
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
        """Feed stdin, collect stdout and stderr, and wait for the child, all at once.
        A pipe already closed was fed or read to its end by an earlier call."""
        out, err = self._output
        async with TaskGroup() as g:
            if self.stdin is not None and self.stdin.socket.fileno() >= 0:
                await g.spawn(self._feed)
            if out is not None and self.stdout.socket.fileno() >= 0:
                await g.spawn(self._collect, "stdout", out)
            if err is not None and self.stderr.socket.fileno() >= 0:
                await g.spawn(self._collect, "stderr", err)
            await self._ended()

    async def _feed(self) -> None:
        """Write the rest of ``communicate``'s input to stdin, then close it (not when
        cancelled: a later ``communicate`` goes on from ``_sent``)."""
        stdin = self.stdin.socket
        try:
            # _input is looked up anew each time: a kill from another task drops it.
            while self._input is not None and self._sent < len(self._input):
                with self._input[self._sent :] as rest:
                    self._sent += await stdin.send(rest)
        except BrokenPipeError:
            pass  # the child did not want it all
        except ResourceBusy:
            raise self._busy("stdin", "writes to") from None
        self._drop_input()
        stdin.close_nowait()

    async def _collect(self, name: str, chunks: list[bytes]) -> None:
        """Read the stdout or stderr pipe to its end into ``chunks``, then close it, as
        ``subprocess`` closes its file at the end."""
        stream = getattr(self, name)
        try:
            while chunk := await stream.read(65536):
                chunks.append(chunk)
        except ResourceBusy:
            raise self._busy(name, "reads") from None
        await stream.close()

    def _busy(self, name: str, does: str) -> ResourceBusy:
        return ResourceBusy(
            f"another task {does} {self._pipe_name(name)}: communicate() needs the pipe "
            "to itself"
        )

    def _drop_input(self) -> None:
        """Release ``communicate``'s view of its input, so the caller's buffer (a
        ``bytearray``, say) can change size again."""
        if self._input is not None:
            self._input.release()
            self._input = None

    async def __aenter__(self) -> Popen:
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        # cancelled, timed out, or the program stops (KeyboardInterrupt, SystemExit):
        # waiting for the child cannot end it, and nothing would bound that wait
        if isinstance(exc, TaskCancelled | KeyboardInterrupt | SystemExit):
            await self._kill_and_reap()
        self._drop_input()  # stdin closes here: the rest of the input can never go
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
    _check_timeout(timeout)
    async with Popen(
        args, stdin=stdin, stdout=stdout, stderr=stderr, cwd=cwd, env=env, **options
    ) as p:
        try:
            output, errors = await p.communicate(input, timeout)
        except BaseException:  # TimeoutExpired (with the output so far) included
            await p._kill_and_reap()
            raise
    if check and p.returncode:
        raise _subprocess.CalledProcessError(p.returncode, args, output, errors)
    return _subprocess.CompletedProcess(args, p.returncode, output, errors)


def _check_timeout(timeout: Any) -> None:
    """A timeout is ``None`` or a number of seconds; a negative one has passed already, as
    in ``subprocess``. NaN is refused: it would never pass, nor count as passed."""
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds, not {timeout!r}")
    if timeout != timeout:
        raise ValueError("timeout must be a number of seconds, not nan")


async def _within(timeout: float | None, work: Callable[[], Coroutine[Any, Any, None]]) -> bool:
    """Await ``work()``; False if ``timeout`` seconds passed first (it is then cancelled)."""
    if timeout is None:
        await work()
        return True
    async with ignore_after(timeout):
        await work()
        return True
    return False


def _joined(chunks: list[bytes] | None) -> bytes | None:
    return None if chunks is None else b"".join(chunks)
