"""The kernel: one thread, many tasks, one epoll.

Theory of operation. ``run(main)`` makes a :class:`Kernel`, turns ``main`` into the first
task and loops:

1. ask epoll which files are ready (timeout 0 if some task is ready to run, else until
   the nearest timer), and move the tasks waiting for them to the ready queue, all the
   events of one ``poll()`` in one batch;
2. fire the timers that are due (sleeps end, timeout scopes expire);
3. run every task that was ready at the start of this step. Running a task means
   ``send()``-ing it a value (or ``throw()``-ing an exception) until it yields a trap
   (see ``traps.py``) that makes it wait, or it ends.

The loop stops when the main task and every non-daemon task have ended; daemon tasks are
then cancelled and waited for.

epoll registrations. A fd is registered (level-triggered) the first time a task waits
for it and stays registered across waits: a server that answers a request, finds the next
one not there yet (the socket methods always try the system call first) and waits again
costs no ``epoll_ctl`` at all. When epoll reports an event nobody waits for, that
interest is dropped (``modify``; ``unregister`` when no interest is left, because EPOLLHUP
is reported even for an empty mask). Closing a ``Socket`` calls :meth:`Kernel.release_fd`,
which unregisters it and wakes its waiters with ``ClosedResourceError``. Each registration
remembers its owner: if a fd number comes back with another owner, the registration is
renewed rather than trusted. A socket is remembered by its *registration*, a weak
reference to it that the socket keeps (``_registration``), so the table never keeps a
socket alive: a socket dropped without ``close`` is collected, which closes its fd, and
the registration's callback first takes the fd out of epoll and the table
(``_owner_gone``). Any other owner (a subprocess's pidfd) is held as itself.

Timers. The kernel reads the time in one place, ``_clock``: ``time.monotonic``, or the
``MockClock`` of a test (``run(main, clock=...)``, see ``clock.py``), which also decides
how long an idle ``poll()`` may wait and may jump to the next deadline. One heap of
``(deadline, seq, target)``; ``target`` is a sleeping task or a timeout scope. Cancelling
a timer is free: the task or scope just stops matching ``seq``, and a stale entry is
skipped when it comes up. When stale entries are more than half the heap, the heap is
rebuilt without them, so short scopes around long deadlines cannot grow it without bound.

Cancellation is delivered at blocking points only. ``cancel(task, exc)`` on a waiting
task takes it out of what it waits for and reschedules it with ``exc``; on a task that is
running or already ready (its answer is on its way) the exception is kept as *pending*
and thrown at the task's next trap. An explicit cancellation replaces a pending timeout,
never the other way round.

Deadlock. When no task is ready, no timer is armed, no fd is registered, and no task
waits for a thread or a signal, nothing can ever wake a task again: instead of sleeping
in ``poll()`` forever the kernel cancels every task and ``run()`` raises
:class:`DeadlockError`, naming each task and where it waits. (With sockets registered the
kernel cannot tell a deadlock from a quiet server, and waits.)

Threads and signals share one wake-up pipe: a thread that hands a result to a task
appends it to the inbox and writes ``b"\\0"``; the C signal handler writes the signal
number (``signal.set_wakeup_fd``). Ctrl-C (SIGINT) cancels the main task, lets its
``finally`` blocks run, and ``run()`` then raises ``KeyboardInterrupt``. A task that
raises ``KeyboardInterrupt`` or ``SystemExit`` itself stops the kernel the same way: every
task is cancelled and ``run()`` re-raises that exception.

Hot loop style: the loop caches bound methods and attributes in locals because it runs
once per request of every connection; the I/O traps are dispatched inline for the same
reason, the others through small methods.

The C core. Where ``plait._core._coro`` is built (Linux), steps 1 and 3 run in C:
``poll`` makes the ``epoll_wait`` and does the fd table's bookkeeping of the loop below,
``run_ready`` sends into each ready task and files its read wait inline (it takes the
next two tasks off the ready deque a step early, to prefetch them, and puts them back at
its front if a step fails); every other
trap, a task's end and its error go through the same methods (``_trap``, ``_finish``,
``_crash``) as in Python, so the two loops cannot drift apart in anything but the
inline read wait. Step 2 stays in Python, and so does everything that reads the clock:
the C side only receives the timeout. The Python loop runs where the core is not built
and when ``slow_step`` is set (it times each step). A socket's ``recv``, ``recv_into``
and ``sendall`` have a C form too (see ``sockets.py``). ``tests/coro`` runs the kernel
and socket tests on both paths (the ``core`` fixture).

Cost of a request: one ``recv``, one ``send`` and a share of one ``epoll_wait``, nothing
else; the system calls are most of it, and the C echo server of the benchmarks makes
the same ones. What this design adds above them is the handler's own frame: one
``send()`` into it, one trap back, and the C bookkeeping around them.
``benchmarks/bench_echo.py`` measures it beside that floor, and its notes keep what
each choice above (registrations kept across waits, a poll's events in one batch,
waiting first after a drained read, the C core) was measured to save.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import select
import signal
import threading
import time
import traceback
import warnings
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from . import traps
from .clock import MockClock
from .errors import (
    ClosedResourceError,
    DeadlockError,
    ResourceBusy,
    SlowStepWarning,
    TaskCancelled,
    TimeoutCancelled,
)
from .task import (
    RUNNING,
    WAIT_EXTERNAL,
    WAIT_PARK,
    WAIT_READ,
    WAIT_SLEEP,
    WAIT_WRITE,
    Task,
    as_coroutine,
    report_crash,
)

try:
    from plait._core import _coro
except ImportError:  # not built (not Linux): the loop below runs in Python alone
    _coro = None
else:
    _coro.set_task_type(Task)

__all__ = ["Kernel", "run", "where"]

log = logging.getLogger("plait.coro")

_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
_READABLE = select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP | select.EPOLLRDHUP
_WRITABLE = select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP
_LONGEST_POLL = 86400.0  # seconds: the longest single wait of the loop

# Raised by a task, these stop the whole kernel and come out of run().
_FATAL = (KeyboardInterrupt, SystemExit)
# seconds the tasks get for their finally blocks when an exception escaped the loop
_WIND_DOWN = 5.0

_READ_WAIT = traps.READ_WAIT
_WRITE_WAIT = traps.WRITE_WAIT
_PARK = traps.PARK
_SLEEP = traps.SLEEP
_SUSPEND = traps.SUSPEND


# The fd table, ``Kernel._fds``: fd -> [mask, reader, writer, owner], a list the hot loop
# reads and updates in place. ``mask`` is what epoll watches for the fd, ``reader`` and
# ``writer`` the tasks waiting (or None), ``owner`` the object whose fd number this is.
_MASK = 0
_READER = 1
_WRITER = 2
_OWNER = 3


class _Registration(weakref.ref):
    """The fd table's owner of a socket's fd: a weak reference to the socket, which keeps
    it in its ``_registration`` (the C core compares the two without a call). When the
    socket is collected, ``_owner_gone`` runs before its fd is closed."""

    __slots__ = ("fd", "kernel")

    def __new__(cls, owner: object, fd: int, kernel: weakref.ref) -> _Registration:
        self = super().__new__(cls, owner, _owner_gone)
        self.fd = fd
        self.kernel = kernel
        return self

    def __init__(self, owner: object, fd: int, kernel: weakref.ref) -> None:
        super().__init__(owner, _owner_gone)


def _owner_gone(
    registration: _Registration, _state: Any = traps.state, _owner: int = _OWNER
) -> None:
    """A socket dropped without ``close`` is being collected; its fd is still open.

    Taking it out of epoll now matters: once the fd is closed, a copy of it (in a forked
    child) would keep reporting events that no fd number can unregister. The table entry
    is removed in the kernel's own thread only; elsewhere it stays, stale and harmless
    (its owner is dead, so a new owner of the number renews it), rather than change the
    table under the kernel's feet. In a forked child nothing is done: the child shares
    the parent's epoll set, and the socket is the parent's too.

    What it uses is bound as defaults: at interpreter exit, a socket collected after
    this module's globals were cleared still finds them.
    """
    kernel = registration.kernel()
    if kernel is None or kernel._closed or not kernel._in_owner_process():
        return
    fd = registration.fd
    entry = kernel._fds.get(fd)
    if entry is None or entry[_owner] is not registration:
        return
    try:
        kernel._epoll.unregister(fd)
    except (OSError, ValueError):
        pass  # closed behind plait's back, or the epoll itself is closed
    if _state.kernel is kernel:
        kernel._fds.pop(fd, None)


def _owner_key(owner: Any) -> Any:
    """What the fd table's owner slot holds for ``owner``: its registration if it keeps
    one (a socket; None before its first wait, which matches no entry), else itself."""
    return getattr(owner, "_registration", owner)


def _foreign(task: Task) -> RuntimeError:
    return RuntimeError(
        f"task {task.id} ({task.name}) waits in another plait kernel: a plait.coro Lock, "
        "Event, Semaphore, Condition or Queue serves the tasks of one kernel; between "
        "kernels or threads, use UniversalQueue or UniversalEvent"
    )


class _WakeUp:
    """A timer's target that only ends the loop's wait (see ``Kernel._wind_down``)."""

    @staticmethod
    def timer_live(seq: int) -> bool:
        return True

    @staticmethod
    def expire(kernel: Kernel) -> None:
        pass


_WAKE_UP = _WakeUp()


def _ignore_signal(signo: int, frame: Any) -> None:
    """Python-level handler: the signal is acted on through the wake-up pipe instead."""


class Kernel:
    """The scheduler. Use :func:`run`; a kernel runs one ``main`` and is then closed.

    ``slow_step``: if set (seconds), warn with :class:`SlowStepWarning` whenever one step
    of a task keeps the kernel busy longer than that. ``max_threads`` bounds the worker
    threads of ``run_in_thread``. ``clock``: a :class:`MockClock` whose time the kernel's
    timers follow instead of ``time.monotonic`` (see ``clock.py``).
    """

    def __init__(
        self,
        *,
        slow_step: float | None = None,
        max_threads: int = 16,
        clock: MockClock | None = None,
    ) -> None:
        if clock is not None and not isinstance(clock, MockClock):
            raise TypeError(f"clock must be a plait.coro.MockClock or None, got {clock!r}")
        if isinstance(max_threads, bool) or not isinstance(max_threads, int):
            raise TypeError(f"max_threads must be an int, got {max_threads!r}")
        if max_threads < 1:
            raise ValueError(f"max_threads must be at least 1, got {max_threads}")
        self.slow_step = slow_step
        self.max_threads = max_threads
        self.mock_clock = clock
        # the one place the kernel reads the time
        self._clock: Callable[[], float] = time.monotonic if clock is None else clock.current_time
        self.current: Task | None = None
        self.tasks: dict[int, Task] = {}
        self.closers: list[Callable[[], None]] = []
        # the tasks that crashed, kept alive for whoever set a list here (the pytest
        # plugin): a crashed task that is collected unjoined is logged, and then gone
        self.kept_crashes: list[Task] | None = None
        # task id -> what to call when that task ends, however it ends (at most one each)
        self.end_hooks: dict[int, Callable[[Task], None]] = {}
        self.signal_watchers: dict[int, list[Any]] = {}
        self.thread_pool: Any = None
        self._epoll = select.epoll()
        self._fds: dict[int, list] = {}  # the fd table (see _MASK)
        self._self_ref = weakref.ref(self)  # what a socket's _Registration holds
        self._pid = os.getpid()  # a forked child shares the epoll set: it must not change it
        self._ready: deque[Task] = deque()
        self._timers: list[tuple[float, int, Any]] = []
        self._stale_timers = 0
        self._seq = itertools.count()
        self._nondaemon = 0
        self._inbox: deque = deque()
        self._notified = False
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wake_lock = threading.Lock()  # see wake_threadsafe
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._crashed: weakref.WeakSet[Task] = weakref.WeakSet()
        self._main: Task | None = None
        self._interrupted: bool | str = False
        self._fatal: BaseException | None = None
        self._deadlock: DeadlockError | None = None
        self._closed = False
        self._shutting_down = False  # main and the non-daemon tasks ended: daemons go

    # -- the public face of the kernel for the other modules of plait.coro -------------

    def start(self, coro: Any, name: str, daemon: bool, group: Any = None) -> Task:
        """Make ``coro`` a task, ready to run. Never blocks.

        A daemon task started while the kernel shuts down (from a ``finally`` of a task
        being cancelled) is cancelled at once: nothing would cancel it later.
        """
        task = Task(coro, name, daemon)
        task._group = group
        self.tasks[task.id] = task
        if not daemon:
            self._nondaemon += 1
        elif self._shutting_down:
            task._cancel_pending = TaskCancelled("the kernel is shutting down")
        self._ready.append(task)
        return task

    def wake(self, task: Task, value: Any = None, exc: BaseException | None = None) -> None:
        """Make a waiting task ready; it will get ``value`` (or ``exc``) from its trap.

        Raises ``RuntimeError`` for a task of another kernel: a ``Lock`` or ``Event`` of
        ``plait.coro`` shared by two kernels (two threads, or ``to_asyncio`` calls of two
        asyncio loops) would have this kernel run that task in its thread.
        """
        if not self._owns(task):
            raise _foreign(task)
        self._ready_with(task, value, exc)

    def _owns(self, task: Task) -> bool:
        return self.tasks.get(task.id) is task

    def _ready_with(self, task: Task, value: Any, exc: BaseException | None) -> None:
        """``wake`` for a task known to be this kernel's (from its own tables)."""
        task._value = value
        task._exc = exc
        task._wait_kind = RUNNING
        task._wait_obj = None
        task._wait_cancel = None
        self._ready.append(task)

    def wake_threadsafe(
        self, task: Task, token: object, value: Any = None, exc: BaseException | None = None
    ) -> None:
        """From any thread: end ``task``'s ``SUSPEND`` wait on ``token`` with this answer.

        Ignored if the task no longer waits on ``token`` (it was cancelled meanwhile).
        """
        if self._closed:
            return
        self._inbox.append((task, token, value, exc))
        if not self._notified:
            self._notified = True
            # under the lock that _close closes the pipe with: a write after the close
            # could land in a file that took the fd number meanwhile
            with self._wake_lock:
                if self._closed:
                    return
                try:
                    os.write(self._wake_w, b"\0")
                except BlockingIOError:
                    pass  # the pipe is full: a wake-up is pending anyway

    def cancel(self, task: Task, exc: BaseException) -> None:
        """Deliver ``exc`` to ``task`` at its current or next blocking point."""
        if task.terminated:
            return
        if not self._owns(task):  # before its wait is undone here
            raise _foreign(task)
        if task._wait_kind == RUNNING or not self._unwait(task):
            pending = task._cancel_pending
            # A cancel replaces a pending timeout; of two timeouts the outer scope's (the
            # one entered first) wins: the inner one's would be caught inside it, and the
            # outer deadline, whose timer has fired, would never come again.
            if pending is None or (
                isinstance(pending, TimeoutCancelled)
                and (not isinstance(exc, TimeoutCancelled) or exc.scope._seq < pending.scope._seq)
            ):
                task._cancel_pending = exc
            return
        self._ready_with(task, None, exc)

    def call_at(self, deadline: float, scope: Any) -> int:
        """Arm a timer that calls ``scope.expire(seq)`` at ``deadline``; returns ``seq``."""
        seq = next(self._seq)
        heapq.heappush(self._timers, (deadline, seq, scope))
        return seq

    def timer_cancelled(self) -> None:
        """A timer became stale (its scope closed early); rebuild the heap if worth it."""
        self._stale_timers += 1
        if self._stale_timers > 64 and self._stale_timers * 2 > len(self._timers):
            self._timers = [t for t in self._timers if self._timer_live(t[2], t[1])]
            heapq.heapify(self._timers)
            self._stale_timers = 0

    @staticmethod
    def _timer_live(target: Any, seq: int) -> bool:
        if target.__class__ is Task:
            return target._wait_kind == WAIT_SLEEP and target._wait_obj == seq
        return target.timer_live(seq)

    def time(self) -> float:
        """The kernel's clock, in seconds: ``time.monotonic()`` or its MockClock's time."""
        return self._clock()

    def release_fd(self, fileno: int) -> None:
        """Forget ``fileno`` before it is closed; its waiters get ``ClosedResourceError``."""
        entry = self._fds.pop(fileno, None)
        if entry is None:
            return
        if self._in_owner_process():
            try:
                self._epoll.unregister(fileno)
            except OSError:
                pass  # already gone from the epoll set (closed behind our back)
        for task in (entry[_READER], entry[_WRITER]):
            if task is not None:
                self._ready_with(
                    task, None, ClosedResourceError(f"file {fileno}, closed while waited on,")
                )

    def _in_owner_process(self, _getpid: Callable[[], int] = os.getpid) -> bool:
        """False in a child forked from this kernel's process, which shares its epoll set:
        a socket the child closes or drops stays registered for the parent. (``getpid``
        is bound: ``_owner_gone`` calls this at interpreter exit too.)"""
        return _getpid() == self._pid

    def statistics(self) -> dict[str, int]:
        """Counts for monitoring: tasks, ready tasks, registered fds, timers (stale too)."""
        return {
            "tasks": len(self.tasks),
            "ready": len(self._ready),
            "fds_registered": len(self._fds),
            "timers": len(self._timers),
            "stale_timers": self._stale_timers,
            "thread_results_pending": len(self._inbox),
        }

    # -- waiting and unwaiting ---------------------------------------------------------

    def _unwait(self, task: Task) -> bool:
        """Take a waiting task out of what it waits for. False: its answer is on its way."""
        kind = task._wait_kind
        obj = task._wait_obj
        if kind == WAIT_READ or kind == WAIT_WRITE:
            entry = self._fds.get(obj)
            slot = _READER if kind == WAIT_READ else _WRITER
            if entry is not None and entry[slot] is task:
                entry[slot] = None
        elif kind == WAIT_PARK:
            try:
                obj.remove(task)
            except ValueError:
                pass
        elif kind == WAIT_SLEEP:
            self._stale_timers += 1
        elif kind == WAIT_EXTERNAL:
            cancel = task._wait_cancel
            if cancel is not None and cancel() is False:
                return False
        return True

    def _register(self, task: Task, fd: int, owner: object, kind: int) -> None:
        """File ``task`` as the reader (kind ``WAIT_READ``) or writer (``WAIT_WRITE``) of
        ``fd``."""
        fds = self._fds
        entry = fds.get(fd)
        reading = kind == WAIT_READ
        want = _EPOLLIN if reading else _EPOLLOUT
        slot = _READER if reading else _WRITER
        key = _owner_key(owner)
        if entry is None or entry[_OWNER] is not key:
            if fd < 0:
                raise ClosedResourceError(repr(owner))
            if entry is not None:
                self.release_fd(fd)  # a stale registration of a fd number now reused
            if key is not owner and (key is None or key.kernel is not self._self_ref):
                # a socket's first wait in this kernel: a registration of its own
                key = owner._registration = _Registration(owner, fd, self._self_ref)
            try:
                self._epoll.register(fd, want)
            except FileExistsError:
                self._epoll.modify(fd, want)
            # in the table once epoll has it: a failed registration leaves no entry
            entry = fds[fd] = [want, None, None, key]  # _MASK, _READER, _WRITER, _OWNER
        elif entry[slot] is not None:
            raise ResourceBusy(
                f"task {entry[slot].id} already waits to {'read' if reading else 'write'} "
                f"fd {fd}; two tasks cannot wait for the same event of one socket"
            )
        elif not entry[_MASK] & want:
            self._epoll.modify(fd, entry[_MASK] | want)
            entry[_MASK] |= want
        entry[slot] = task
        task._wait_kind = kind
        task._wait_obj = fd

    # -- the loop ----------------------------------------------------------------------

    def run(self, main: Any, *args: Any) -> Any:
        """Run ``main(*args)`` and every task it spawns; return main's result or raise.

        Blocks until main and all non-daemon tasks have ended. Raises ``KeyboardInterrupt``
        if Ctrl-C cancelled the main task, and ``RuntimeError`` if a kernel already runs in
        this thread.
        """
        if self._closed:
            raise RuntimeError("this kernel has already run; make a new one")
        if traps.state.kernel is not None:
            self._close()
            raise RuntimeError("a plait kernel already runs in this thread; await instead")
        try:
            if self.mock_clock is not None:
                self.mock_clock._attach(self, self._epoll.fileno())
            coro, name = as_coroutine(main, args)
        except BaseException:
            self._close()
            raise
        traps.state.kernel = self
        if _coro is not None:
            _coro.set_running(True)
        old_sigint = old_wakeup = None
        try:
            if threading.current_thread() is threading.main_thread():
                old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
                if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                    old_sigint = signal.signal(signal.SIGINT, _ignore_signal)
            self._main = main_task = self.start(coro, name, False)
            main_task._observed = True
            try:
                self._loop(lambda: self._nondaemon > 0)
                self._shutting_down = True
                for task in list(self.tasks.values()):
                    self.cancel(task, TaskCancelled("the kernel is shutting down"))
                self._loop(lambda: bool(self.tasks))
            except BaseException as escaped:
                self._wind_down(escaped)
                raise
        finally:
            if old_sigint is not None:
                signal.signal(signal.SIGINT, old_sigint)
            if old_wakeup is not None:
                signal.set_wakeup_fd(old_wakeup)
            traps.state.kernel = None
            if _coro is not None:
                _coro.set_running(False)
            self._close()
        if self._fatal is not None:
            raise self._fatal
        if self._deadlock is not None:  # main's result too: the tasks left after it hung
            raise self._deadlock from main_task._exception
        if self._interrupted == "late" or (self._interrupted and main_task.cancelled):
            raise KeyboardInterrupt
        if main_task.cancelled:
            raise main_task._exception or TaskCancelled("the main task was cancelled")
        return main_task.result

    def _wind_down(self, escaped: BaseException) -> None:
        """``escaped`` came out of the loop itself, not out of a task: a signal handler
        raised it (pytest-timeout's, say) while the kernel waited. Cancel every task and
        run them for up to ``_WIND_DOWN`` seconds, so that their ``finally`` blocks (an
        async fixture's teardown) run inside the kernel as in a shut-down; ``_close``
        then closes what is left. ``escaped`` is what run() raises."""
        self._shutting_down = True
        for task in list(self.tasks.values()):
            self.cancel(task, TaskCancelled(f"stopping: {escaped!r} escaped the kernel's loop"))
        if self.mock_clock is None:  # a timer that ends the wait below in time
            self.call_at(self._clock() + _WIND_DOWN, _WAKE_UP)
        deadline = time.monotonic() + _WIND_DOWN
        try:
            self._loop(lambda: bool(self.tasks) and time.monotonic() < deadline)
        except BaseException as again:
            log.warning("tasks left unfinished: %r escaped the kernel's loop again", again)

    def _close(self) -> None:
        self._closed = True
        if self.mock_clock is not None:
            self.mock_clock._detach(self)
        for close in reversed(self.closers):
            try:
                close()
            except Exception:
                log.exception("closing a kernel resource failed")
        self.closers.clear()
        for task in list(self._crashed):
            if not task._observed:
                report_crash(task)
        try:
            for task in list(self.tasks.values()):
                try:
                    task.coro.close()
                except Exception as e:  # a finally block that awaits finds no kernel
                    log.warning("task %d (%s) did not finish: %r", task.id, task.name, e)
        finally:
            self._fds.clear()
            self._epoll.close()
            with self._wake_lock:
                os.close(self._wake_r)
                os.close(self._wake_w)
            self._timers.clear()

    def _handle_wakeup(self) -> None:
        """The wake-up pipe is readable: threads handed results or signals arrived."""
        signals = b""
        while True:
            try:
                chunk = os.read(self._wake_r, 4096)
            except BlockingIOError:
                break
            signals += chunk
            if len(chunk) < 4096:
                break
        self._notified = False
        inbox = self._inbox
        while inbox:
            task, token, value, exc = inbox.popleft()
            if task._wait_kind == WAIT_EXTERNAL and task._wait_obj is token:
                self._ready_with(task, value, exc)
        for signo in signals.replace(b"\0", b""):
            watchers = self.signal_watchers.get(signo)
            if watchers:
                for watcher in list(watchers):
                    watcher.deliver(signo)
            elif signo == signal.SIGINT and self._main is not None:
                # Ctrl-C cancels the main task; once main is over (run() is waiting for
                # non-daemon tasks), it cancels them all.
                if self._main.terminated:
                    self._interrupted = "late"
                    targets = list(self.tasks.values())
                else:
                    self._interrupted = True
                    targets = [self._main]
                for task in targets:
                    self.cancel(task, TaskCancelled("interrupted by SIGINT (Ctrl-C)"))

    def _waits_for_io(self) -> bool:
        """Whether a task waits for a fd. A registration outlives its wait (see
        ``_register``): an event on a fd no task waits for wakes nobody."""
        return any(e[_READER] is not None or e[_WRITER] is not None for e in self._fds.values())

    def _deadlocked(self, why: str = "nothing can wake one") -> bool:
        """Called when nothing is ready, no timer can fire and no task waits for a fd: if
        no task waits for a thread or a signal either, nothing can ever wake a task. Then
        cancel them all (their ``finally`` blocks run) and make run() raise."""
        if any(t._wait_kind == WAIT_EXTERNAL for t in self.tasks.values()):
            return False
        if any(self.signal_watchers.values()):
            return False
        if self._deadlock is None:
            table = "; ".join(
                f"task {t.id} ({t.name}) {t.state} at {where(t)}" for t in self.tasks.values()
            )
            self._deadlock = DeadlockError(f"deadlock: every task waits and {why}: {table}")
        for task in list(self.tasks.values()):
            self.cancel(task, TaskCancelled("deadlock: cancelled by the kernel"))
        return True

    def _stop(self, error: BaseException) -> None:
        """A task raised KeyboardInterrupt or SystemExit: cancel everything, re-raise it."""
        if self._fatal is None:
            self._fatal = error
            error_task = self.current
            if error_task is not None:
                error_task._observed = True
        for task in list(self.tasks.values()):
            self.cancel(task, TaskCancelled(f"stopping: a task raised {error!r}"))

    def _fire_timers(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, seq, target = heapq.heappop(timers)
            if target.__class__ is Task:
                if target._wait_kind == WAIT_SLEEP and target._wait_obj == seq:
                    self._ready_with(target, None, None)
                else:
                    self._stale_timers -= 1
            elif target.timer_live(seq):
                target.expire(self)
            else:
                self._stale_timers -= 1
        if self._stale_timers < 0:
            self._stale_timers = 0

    def _finish(self, task: Task, result: Any, exc: BaseException | None) -> None:
        task.terminated = True
        task._wait_kind = RUNNING
        task._cancel_pending = None
        if exc is None:
            task._result = result
        elif isinstance(exc, TaskCancelled):
            task.cancelled = True
        else:
            task._exception = exc
            self._crashed.add(task)
            if self.kept_crashes is not None:
                self.kept_crashes.append(task)
        del self.tasks[task.id]
        if not task.daemon:
            self._nondaemon -= 1
        joiners = task._joiners
        while joiners:
            self._ready_with(joiners.popleft(), None, None)
        if task._group is not None:
            task._group.task_done(task)
        if self.end_hooks:
            hook = self.end_hooks.pop(task.id, None)
            if hook is not None:
                hook(task)

    def _crash(self, task: Task, error: BaseException) -> None:
        """``task`` raised ``error``: it is over; a fatal error stops the kernel."""
        self._finish(task, None, error)
        if isinstance(error, _FATAL) and task is not self._main:
            self._stop(error)

    def _trap(self, task: Task, trap: Any) -> tuple[bool, Any, BaseException | None]:
        """The traps that are not dispatched inline. Returns (suspended, value, exc)."""
        if trap.__class__ is not tuple or not trap:
            return (
                False,
                None,
                TypeError(
                    f"task {task.id} ({task.name}) yielded {trap!r}, which is not a plait trap "
                    "(was an asyncio or trio object awaited inside plait.coro?)"
                ),
            )
        code = trap[0]
        if code == _PARK:
            waiters = trap[1]
            if waiters and not self._owns(waiters[0]):
                return False, None, _foreign(waiters[0])
            waiters.append(task)
            task._wait_kind = WAIT_PARK
            task._wait_obj = trap[1]
            task._wait_state = trap[2]
            return True, None, None
        if code == _SLEEP:
            seconds = trap[1]
            if seconds <= 0:
                self._ready_with(task, None, None)
                return True, None, None
            seq = next(self._seq)
            heapq.heappush(self._timers, (self._clock() + seconds, seq, task))
            task._wait_kind = WAIT_SLEEP
            task._wait_obj = seq
            return True, None, None
        if code == _SUSPEND:
            task._wait_kind = WAIT_EXTERNAL
            task._wait_state = trap[1]
            task._wait_obj = trap[2]
            task._wait_cancel = trap[3]
            return True, None, None
        if code == _READ_WAIT or code == _WRITE_WAIT:
            try:
                self._register(
                    task, trap[1], trap[2], WAIT_READ if code == _READ_WAIT else WAIT_WRITE
                )
            except (ResourceBusy, OSError, ValueError) as e:  # the task's, not the kernel's
                return False, None, e
            return True, None, None
        return False, None, TypeError(f"task {task.id} ({task.name}) yielded unknown trap {trap!r}")

    def _mock_idle(self, clock: MockClock) -> float:
        """poll()'s timeout when nothing is ready and timers are armed on ``clock``: the
        clock's answer for the next live timer (it may jump), or a deadlock verdict when
        no timer can fire and nothing else can wake a task. Stale timers on top of the
        heap go first: a clock that jumps must land on a deadline a task still waits for."""
        timers = self._timers
        while timers and not self._timer_live(timers[0][2], timers[0][1]):
            heapq.heappop(timers)
            self._stale_timers = max(0, self._stale_timers - 1)
        timeout = clock._idle_timeout(timers[0][0]) if timers else -1.0
        if timeout < 0 and not self._waits_for_io():
            if not timers:
                why = "nothing can wake one"
            elif timers[0][0] == math.inf:
                why = "the timers never expire (math.inf)"
            else:
                why = (
                    "the timers wait for a stopped MockClock that no task can jump "
                    "(give it autojump_threshold or a rate)"
                )
            if self._deadlocked(why):
                return 0.0
        return timeout

    def _loop(self, keep_going: Callable[[], bool]) -> None:
        ready = self._ready
        popleft = ready.popleft
        append = ready.append
        fds = self._fds
        entry_of = fds.get
        poll = self._epoll.poll
        modify = self._epoll.modify
        unregister = self._epoll.unregister
        monotonic = self._clock
        mock_clock = self.mock_clock
        wake_r = self._wake_r
        trap_other = self._trap
        finish = self._finish
        crash = self._crash
        slow_step = self.slow_step
        perf_counter = time.perf_counter
        # step 1 in C (plait._core._coro.poll), the same bookkeeping as the loop below
        c_poll = c_run = None
        if _coro is not None and _coro.enabled():
            c_poll = _coro.poll
            if slow_step is None:  # step 3 in C (plait._core._coro.run_ready) but timed
                c_run = _coro.run_ready
        epoll_fd = self._epoll.fileno()
        # the fd table's slots, as locals like the rest: indexed per event and per wait
        MASK, READER, WRITER, OWNER = _MASK, _READER, _WRITER, _OWNER
        owner_key = _owner_key

        while keep_going():
            timers = self._timers
            if ready:
                timeout = 0
            elif timers:
                # at most a day: epoll refuses a longer wait (sleep(1e9)); the loop waits again
                timeout = min(_LONGEST_POLL, max(0.0, timers[0][0] - monotonic()))
                if mock_clock is not None:  # a MockClock's seconds are not poll()'s
                    timeout = self._mock_idle(mock_clock)
            else:
                timeout = -1
                if not self._waits_for_io() and self._deadlocked():
                    continue
            if c_poll is not None:
                milliseconds = -1 if timeout < 0 else math.ceil(timeout * 1e3)
                if c_poll(epoll_fd, milliseconds, fds, wake_r, append):
                    self._handle_wakeup()
                events = ()
            else:
                events = poll(timeout)
            for fd, ev in events:
                entry = entry_of(fd)
                if entry is None:
                    if fd == wake_r:
                        self._handle_wakeup()
                    continue
                drop = 0
                if ev & _READABLE:
                    task = entry[READER]
                    if task is not None:
                        # an I/O waiter's _value and _exc are None already
                        entry[READER] = None
                        task._wait_kind = RUNNING
                        append(task)
                    elif entry[MASK] & _EPOLLIN:
                        drop = _EPOLLIN
                if ev & _WRITABLE:
                    task = entry[WRITER]
                    if task is not None:
                        entry[WRITER] = None
                        task._wait_kind = RUNNING
                        append(task)
                    elif entry[MASK] & _EPOLLOUT:
                        drop |= _EPOLLOUT
                if drop:  # no task waits for these events: stop watching them
                    mask = entry[MASK] & ~drop
                    try:
                        if mask:
                            modify(fd, mask)
                            entry[MASK] = mask
                        else:
                            del fds[fd]
                            unregister(fd)
                    except OSError:  # closed behind plait's back: nothing can manage it
                        fds.pop(fd, None)
            if timers and timers[0][0] <= monotonic():
                self._fire_timers(monotonic())

            if c_run is not None:
                c_run(self, popleft, len(ready), fds, epoll_fd, finish, crash, trap_other)
                self.current = None
                continue
            for _ in range(len(ready)):
                task = popleft()
                self.current = task
                value = task._value
                exc = task._exc
                if value is not None or exc is not None:
                    task._value = task._exc = None
                send = task._send
                if slow_step is not None:
                    started = perf_counter()
                while True:
                    try:
                        if exc is None:
                            trap = send(value)
                        else:
                            trap = task._throw(exc)
                    except StopIteration as stop:
                        finish(task, stop.value, None)
                        break
                    except BaseException as error:
                        crash(task, error)
                        break
                    exc = task._cancel_pending
                    if exc is not None:
                        task._cancel_pending = None
                        value = None
                        continue
                    # inline: the read wait, the most frequent trap of a server
                    if trap.__class__ is tuple and trap[0] == _READ_WAIT:
                        fd = trap[1]
                        entry = entry_of(fd)
                        if (
                            entry is not None
                            and entry[OWNER] is owner_key(trap[2])
                            and entry[READER] is None
                        ):
                            if not entry[MASK] & _EPOLLIN:
                                entry[MASK] |= _EPOLLIN
                                modify(fd, entry[MASK])
                            entry[READER] = task
                            task._wait_kind = WAIT_READ
                            task._wait_obj = fd
                            break
                    suspended, value, exc = trap_other(task, trap)
                    if suspended:
                        break
                if slow_step is not None:
                    elapsed = perf_counter() - started
                    if elapsed > slow_step:
                        warnings.warn(
                            SlowStepWarning(
                                f"task {task.id} ({task.name}) held the kernel for "
                                f"{elapsed * 1e3:.1f} ms in one step (threshold "
                                f"{slow_step * 1e3:.1f} ms); it now waits at {where(task)}"
                            ),
                            stacklevel=1,
                        )
            self.current = None


def where(task: Task) -> str:
    """``file:line (function)`` of the innermost frame of ``task`` outside plait.coro."""
    frames = []
    obj = task.coro
    while obj is not None:
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None)
        if frame is not None:
            frames.append(frame)
        obj = getattr(obj, "cr_await", None) or getattr(obj, "gi_yieldfrom", None)
    here = os.path.dirname(__file__)
    for frame in reversed(frames):
        if os.path.dirname(frame.f_code.co_filename) != here:
            summary = traceback.FrameSummary(
                frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name
            )
            return f"{summary.filename}:{summary.lineno} ({summary.name})"
    if frames:
        frame = frames[-1]
        return f"{frame.f_code.co_filename}:{frame.f_lineno} ({frame.f_code.co_name})"
    return "-"


def run(
    main: Any,
    *args: Any,
    slow_step: float | None = None,
    max_threads: int = 16,
    clock: MockClock | None = None,
) -> Any:
    """Run the coroutine (or generator-style task) ``main(*args)`` in a new kernel.

    Blocks until ``main`` and every non-daemon task it spawned have ended, then cancels
    daemon tasks, closes every thread, fd and timer of the kernel, logs tasks that
    crashed unobserved, and returns main's result (or raises its exception). With
    ``clock=MockClock(...)`` the kernel's timers run on a test's clock (see ``clock.py``).

    >>> from plait.coro import sleep
    >>> async def main():
    ...     await sleep(0.1)
    ...     return 42
    >>> run(main)
    42
    """
    return Kernel(slow_step=slow_step, max_threads=max_threads, clock=clock).run(main, *args)
