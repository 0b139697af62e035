"""Tasks and task groups.

A :class:`Task` is one coroutine the kernel drives, plus what the kernel needs to know
about it: what it waits for (``_wait_kind``/``_wait_obj``, read by ``ps()`` and by
cancellation), the value or exception it gets on its next step, and a cancellation that
is pending until the task reaches a blocking point. The kernel owns every field whose
name starts with ``_``; users read ``result``, ``exception``, ``cancelled``, ``state``.

Crash accounting: a task that ends with an exception records it; reading ``result`` or
``exception``, joining it, or belonging to a :class:`TaskGroup` marks it *observed*. The
kernel logs every crash that was never observed, when the task is garbage collected or
at the latest when ``run()`` returns, so no failure disappears silently.

Task groups: ``async with TaskGroup() as g: await g.spawn(f)`` waits at the end of the
block for every task of the group, with asyncio's ``TaskGroup`` semantics (3.11+). The
first child that fails (raises anything but a cancellation) cancels the others and
interrupts the block itself at its current blocking point (with a cancellation the group
recognizes as its own and absorbs at the exit). Every failure is kept: the exit raises
one ``ExceptionGroup`` holding each child's exception in the order they failed, then the
block's own exception if it raised one (a ``BaseExceptionGroup`` when one of them is not
an ``Exception``), so ``except*`` picks them apart (on 3.10 the ``exceptiongroup``
backport's ``catch``). Two exceptions are never wrapped: a cancellation of the task that
owns the group (it cancels the children and goes on once they ended; if children failed
too, the group is raised and the cancellation stays pending for the owner's next
blocking point, so it is not lost), and ``KeyboardInterrupt``/``SystemExit``, which
propagate bare. Either way no task outlives its group, and a group that is shutting down
takes no new task.

Generator-style tasks (a plain generator function, the classic style) are wrapped in a
small driver coroutine: ``yield from sleep(1)`` passes plait's traps straight to the
kernel, and ``data = yield sock.recv(100)`` awaits any awaitable the generator yields.
"""

from __future__ import annotations

import concurrent.futures
import inspect
import itertools
import logging
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from . import traps
from .errors import TaskCancelled, TimeoutCancelled

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

__all__ = [
    "RUNNING",
    "WAIT_EXTERNAL",
    "WAIT_PARK",
    "WAIT_READ",
    "WAIT_SLEEP",
    "WAIT_WRITE",
    "Task",
    "TaskGroup",
    "as_coroutine",
    "current_task",
    "report_crash",
    "spawn",
]

log = logging.getLogger("plait.coro")

_ids = itertools.count(1)

# Values of Task._wait_kind: what a waiting task is filed under. 0 means "not waiting"
# (running or in the ready queue).
RUNNING = 0
WAIT_READ = 1
WAIT_WRITE = 2
WAIT_SLEEP = 3
WAIT_PARK = 4
WAIT_EXTERNAL = 5
_STATE_NAMES = {WAIT_READ: "READ_WAIT", WAIT_WRITE: "WRITE_WAIT", WAIT_SLEEP: "SLEEP"}


class Task:
    """A coroutine run by the kernel. Create tasks with :func:`spawn`, not directly."""

    # What the kernel's loop reads and writes at every step of a task comes first, for the
    # reader: CPython lays slots out in sorted name order whatever order they are declared
    # in, so this order does not place them in memory. Not worth renaming them for: an
    # extra cache line per request costs about 8 ns at 1,000 connections (measured on the
    # C echo server), below what bench_echo resolves.
    __slots__ = (
        "coro",
        "_value",
        "_exc",
        "_wait_kind",
        "_wait_obj",
        "_cancel_pending",
        "id",
        "name",
        "daemon",
        "_send",
        "_throw",
        "_wait_cancel",
        "_wait_state",
        "_joiners",
        "_group",
        "_result",
        "_exception",
        "_observed",
        "cancelled",
        "terminated",
        "__weakref__",
    )

    def __init__(self, coro: Any, name: str, daemon: bool) -> None:
        self.id = next(_ids)
        self.name = name
        self.daemon = daemon
        self.coro = coro
        self._send = coro.send
        self._throw = coro.throw
        self._value = None
        self._exc: BaseException | None = None
        self._wait_kind = RUNNING
        self._wait_obj: Any = None
        self._wait_cancel: Callable[[], bool | None] | None = None
        self._wait_state = ""
        self._cancel_pending: BaseException | None = None
        self._joiners: deque = deque()
        self._group: TaskGroup | None = None
        self._result: Any = None
        self._exception: BaseException | None = None
        self._observed = False
        self.cancelled = False
        self.terminated = False

    def __repr__(self) -> str:
        return f"<Task {self.id} {self.name} {self.state}>"

    @property
    def state(self) -> str:
        """What the task does: READY, RUNNING, TERMINATED, or the wait it is in
        (READ_WAIT, WRITE_WAIT, SLEEP, TASK_JOIN, QUEUE_GET, THREAD_WAIT, ...)."""
        if self.terminated:
            return "TERMINATED"
        kind = self._wait_kind
        if kind == RUNNING:
            k = traps.state.kernel
            return "RUNNING" if k is not None and k.current is self else "READY"
        return _STATE_NAMES.get(kind) or self._wait_state

    @property
    def result(self) -> Any:
        """The return value; raises the task's exception if it failed.

        Raises ``RuntimeError`` while the task runs and ``concurrent.futures.CancelledError``
        if it was cancelled.
        """
        if not self.terminated:
            raise RuntimeError(f"task {self.id} ({self.name}) has not finished")
        self._observed = True
        if self.cancelled:
            raise concurrent.futures.CancelledError(f"task {self.id} ({self.name}) was cancelled")
        if self._exception is not None:
            raise self._exception
        return self._result

    @property
    def exception(self) -> BaseException | None:
        """The exception the task ended with (``None`` if it returned or still runs)."""
        self._observed = True
        return self._exception

    async def wait(self) -> None:
        """Block until the task has terminated, however it ended. Never raises its error.
        ``RuntimeError`` for a task of another kernel (its end could not wake this one)."""
        if not self.terminated and not traps.kernel()._owns(self):
            raise RuntimeError(
                f"task {self.id} ({self.name}) runs in another plait kernel: a task can "
                "only be awaited from its own kernel"
            )
        while not self.terminated:
            await traps.park(self._joiners, "TASK_JOIN")

    async def join(self) -> Any:
        """Block until the task terminates; return its result or raise its exception.

        Raises ``concurrent.futures.CancelledError`` if the task was cancelled.
        """
        await self.wait()
        return self.result

    async def cancel(self, blocking: bool = True) -> None:
        """Cancel the task at its next blocking point; by default wait until it has ended.

        Cancelling a finished task does nothing.
        """
        k = traps.kernel()
        if blocking and self is k.current:
            raise RuntimeError("a task cannot wait for its own cancellation (blocking=False)")
        k.cancel(self, TaskCancelled(f"task {self.id} ({self.name}) cancelled"))
        if blocking:
            await self.wait()

    def __del__(self) -> None:
        if self.terminated and self._exception is not None and not self._observed:
            report_crash(self)


def report_crash(task: Task) -> None:
    """Log the exception of a task that crashed and was never joined."""
    task._observed = True
    exc = task._exception
    log.error(
        "task %d (%s) crashed and was never joined",
        task.id,
        task.name,
        exc_info=(type(exc), exc, exc.__traceback__),
    )


def _is_trap(value: object) -> bool:
    return value.__class__ is tuple


async def _drive_generator(gen: Generator) -> Any:
    """Run a classic generator-style task: pass traps through, await yielded awaitables."""
    value: Any = None
    exc: BaseException | None = None
    while True:
        try:
            yielded = gen.send(value) if exc is None else gen.throw(exc)
        except StopIteration as stop:
            return stop.value
        value, exc = None, None
        try:
            if _is_trap(yielded):
                value = await traps.pass_through(yielded)
            elif inspect.isawaitable(yielded):
                value = await yielded
            else:
                exc = TypeError(
                    f"a generator task yielded {yielded!r}: yield plait traps "
                    "(yield from sleep(1)) or awaitables (yield sock.recv(100))"
                )
        except BaseException as e:  # handed back into the generator, like an await would
            exc = e


def as_coroutine(fn: Callable[..., Any] | Awaitable, args: tuple) -> tuple[Any, str]:
    """Turn what ``spawn``/``run`` were given into a coroutine the kernel can drive."""
    if inspect.iscoroutine(fn) or inspect.isgenerator(fn):
        if args:
            raise TypeError("arguments given with an already created coroutine")
        obj = fn
    elif callable(fn):
        obj = fn(*args)
    else:
        raise TypeError(
            f"spawn needs an async function, a generator function or a coroutine; got {fn!r}"
        )
    name = getattr(obj, "__qualname__", None) or getattr(fn, "__qualname__", repr(fn))
    if inspect.iscoroutine(obj):
        return obj, name
    if inspect.isgenerator(obj):
        return _drive_generator(obj), name
    if inspect.isawaitable(obj):
        return _await(obj), name
    raise TypeError(f"{fn!r} returned {obj!r}, which is neither a coroutine nor a generator")


async def _await(awaitable: Awaitable) -> Any:
    return await awaitable


async def spawn(fn: Callable[..., Any] | Awaitable, *args: Any, daemon: bool = False) -> Task:
    """Start ``fn(*args)`` as a new task and return its :class:`Task` at once (never blocks).

    ``fn`` is an async function, a generator function (classic style) or a coroutine.
    ``run()`` waits for every non-daemon task before it returns and cancels daemon tasks.
    """
    coro, name = as_coroutine(fn, args)
    return traps.kernel().start(coro, name, daemon)


def current_task() -> Task:
    """The task that is running now. Raises ``NoKernelError`` outside the kernel."""
    return traps.kernel().current


class TaskGroup:
    """Tasks that live and die together; see the module notes.

    ``tasks`` lists the tasks spawned in the group; ``exceptions`` the errors of those
    that failed, in the order they failed (all of them are raised together when the group
    exits).

    >>> from plait.coro import run, sleep
    >>> async def fetch(n):
    ...     await sleep(0.01)
    ...     if n == 2:
    ...         raise KeyError(n)
    ...     return n
    >>> async def main():
    ...     try:
    ...         async with TaskGroup() as g:
    ...             await g.spawn(fetch, 1)
    ...             await g.spawn(fetch, 2)
    ...     except Exception as group:
    ...         return [repr(e) for e in group.exceptions]
    >>> run(main)
    ['KeyError(2)']
    """

    def __init__(self) -> None:
        self.tasks: list[Task] = []
        self.exceptions: list[BaseException] = []
        self._running: set[Task] = set()
        self._waiters: deque = deque()
        self._owner: Task | None = None
        self._abort: TaskCancelled | None = None  # thrown into the block by a failure
        self._fatal: BaseException | None = None  # the first KeyboardInterrupt/SystemExit
        self._aborting = False
        self._exiting = False
        self._closed = False

    async def spawn(self, fn: Callable[..., Any] | Awaitable, *args: Any) -> Task:
        """Start ``fn(*args)`` as a task of this group; returns at once.

        Raises ``RuntimeError`` once the group has exited or while it shuts down (a task
        failed, or the block raised).
        """
        if self._owner is None:
            raise RuntimeError("this TaskGroup has not been entered: spawn inside 'async with'")
        if self._closed:
            raise RuntimeError("this TaskGroup has already exited; spawn into a live group")
        if self._aborting:
            raise RuntimeError("this TaskGroup is shutting down (a task or its block failed)")
        coro, name = as_coroutine(fn, args)
        k = traps.kernel()
        task = k.start(coro, name, False, group=self)
        self.tasks.append(task)
        self._running.add(task)
        return task

    def cancel_remaining(self) -> None:
        """Ask every running task of the group to stop (does not wait; the exit waits)."""
        k = traps.kernel()
        for task in list(self._running):
            k.cancel(task, TaskCancelled(f"task {task.id} ({task.name}) cancelled by its group"))

    def _shut_down(self) -> None:
        if not self._aborting:
            self._aborting = True
            self.cancel_remaining()

    def _keep_fatal(self, exc: BaseException) -> None:
        """Remember the first KeyboardInterrupt/SystemExit: it leaves the group bare."""
        if self._fatal is None and isinstance(exc, KeyboardInterrupt | SystemExit):
            self._fatal = exc

    def task_done(self, task: Task) -> None:
        """Kernel hook: ``task`` of this group has terminated."""
        self._running.discard(task)
        task._observed = True
        exc = task._exception
        k = traps.kernel()
        if exc is not None:
            self.exceptions.append(exc)
            self._keep_fatal(exc)
            owner = self._owner
            pending = owner._cancel_pending if owner is not None else None
            if (
                not self._aborting
                and not self._exiting
                and owner is not None
                and (pending is None or isinstance(pending, TimeoutCancelled))
            ):
                # Interrupt the block, unless a cancellation is on its way to it already.
                # A timeout on its way is replaced (the kernel lets a cancel replace a
                # timeout): a scope inside the block could swallow it, as ignore_after does.
                self._abort = TaskCancelled(
                    f"the block of a TaskGroup interrupted: task {task.id} ({task.name}) failed"
                )
                k.cancel(owner, self._abort)
            self._shut_down()
        while self._waiters:
            k.wake(self._waiters.popleft(), None)

    async def __aenter__(self) -> TaskGroup:
        if self._owner is not None:
            raise RuntimeError("this TaskGroup has already been entered")
        self._owner = traps.kernel().current
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        self._exiting = True
        owner = self._owner
        if self._abort is not None and owner._cancel_pending is self._abort:
            owner._cancel_pending = None  # the block ended before the interruption reached it
        if exc is not None and exc is self._abort:
            exc = None  # the block was interrupted by this group: not an error of its own
        cancelled = exc if isinstance(exc, TaskCancelled) else None
        if exc is not None:
            self._keep_fatal(exc)
            self._shut_down()
        while self._running:
            try:
                await traps.park(self._waiters, "TASKGROUP_JOIN")
            except TaskCancelled as e:
                cancelled = cancelled or e
                self._shut_down()
        self._closed = True
        if self._fatal is not None:
            if self._fatal is exc:
                return False
            raise self._fatal
        errors = list(self.exceptions)
        if exc is not None and cancelled is not exc:
            errors.append(exc)
        if errors:
            if cancelled is not None:
                traps.kernel().cancel(owner, cancelled)  # delivered at the owner's next wait
            raise BaseExceptionGroup("unhandled errors in a TaskGroup", errors) from None
        if cancelled is None or cancelled is exc:
            return False  # nothing, or the block's own cancellation, goes on
        raise cancelled
