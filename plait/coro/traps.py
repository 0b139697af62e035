"""Traps: the only doors between a task and the kernel.

A task is a coroutine the kernel drives with ``send()``/``throw()``. When the task must
wait, the innermost frame of its ``await`` chain is one of the small generators below: it
``yield``s a tuple ``(code, arg, arg)`` that travels up through every ``await`` straight to
the kernel's loop, which files the task under what it waits for and moves on. When the
wait is over the kernel ``send()``s the answer (or ``throw()``s an exception) back down the
same chain. No future, no callback object: a tuple in, a value out.

The codes:

``READ_WAIT fd owner`` / ``WRITE_WAIT fd owner``
    wait until the file is readable/writable. ``owner`` is the object that owns the fd
    (a ``Socket``); the kernel keeps the epoll registration across waits and trusts it
    only while the owner is the same object.
``PARK queue state``
    append the task to ``queue`` (a ``collections.deque``) and sleep until some other task
    pops it and hands it a value with ``Kernel.wake``. Locks, events, queues and joins are
    built on this one trap.
``SLEEP seconds``
    sleep; ``seconds <= 0`` only lets the other ready tasks run first.
``SUSPEND state token cancel``
    sleep until another *thread* calls ``Kernel.wake_threadsafe(task, token, ...)``.
    ``cancel()`` is called if the task is cancelled meanwhile; returning ``False`` means
    "too late, the answer is already on its way" and the cancellation waits for the next
    blocking point instead.

The C core's socket operations (``plait._core._coro``, see ``sockets.py``) yield the
same ``READ_WAIT``/``WRITE_WAIT`` tuples from C: to the kernel they are these traps.

Every trap is a blocking point: a pending cancellation or expired timeout is delivered
there, before the task would sleep. Operations that never block (spawning, reading the
clock, finding the current task) do not need a trap: they call the kernel running in this
thread, which :func:`kernel` returns.

A trap awaited outside the kernel (no ``plait.coro.run()`` in this thread, for instance
inside an asyncio program) raises :class:`NoKernelError` instead of confusing the foreign
loop with a tuple.
"""

from __future__ import annotations

import numbers
import threading
import types
from collections import deque
from collections.abc import Callable, Generator
from typing import Any

from .errors import NoKernelError

__all__ = [
    "PARK",
    "READ_WAIT",
    "SLEEP",
    "SUSPEND",
    "WRITE_WAIT",
    "kernel",
    "park",
    "pass_through",
    "read_wait",
    "sleep",
    "suspend",
    "write_wait",
]

READ_WAIT = 0
WRITE_WAIT = 1
PARK = 2
SLEEP = 3
SUSPEND = 4


class _ThreadState(threading.local):
    kernel: Any = None


state = _ThreadState()


def kernel() -> Any:
    """The kernel running in this thread; raises :class:`NoKernelError` if there is none."""
    k = state.kernel
    if k is None:
        raise NoKernelError(
            "no plait kernel runs in this thread: plait.coro operations must be awaited "
            "inside plait.coro.run()"
        )
    return k


def _outside(what: str) -> NoKernelError:
    return NoKernelError(
        f"plait.coro {what} was awaited outside the plait kernel: run the coroutine with "
        "plait.coro.run(), not in another event loop"
    )


@types.coroutine
def read_wait(fileno: int, owner: object) -> Generator[tuple, Any, None]:
    """Block until ``fileno`` is readable (or hung up). Raises if the owner is closed."""
    if state.kernel is None:
        raise _outside("read_wait")
    yield (READ_WAIT, fileno, owner)


@types.coroutine
def write_wait(fileno: int, owner: object) -> Generator[tuple, Any, None]:
    """Block until ``fileno`` is writable (or hung up). Raises if the owner is closed."""
    if state.kernel is None:
        raise _outside("write_wait")
    yield (WRITE_WAIT, fileno, owner)


@types.coroutine
def park(queue: deque, waiting_for: str) -> Generator[tuple, Any, Any]:
    """Sleep in ``queue`` until a ``Kernel.wake`` hands this task a value; return it."""
    if state.kernel is None:
        raise _outside(waiting_for)
    return (yield (PARK, queue, waiting_for))


@types.coroutine
def sleep(seconds: float) -> Generator[tuple, Any, None]:
    """Sleep ``seconds`` (``0`` lets the other ready tasks run). A blocking point.

    Works with ``await sleep(1)`` in ``async def`` tasks and ``yield from sleep(1)`` in
    generator-style tasks.
    """
    if state.kernel is None:
        raise _outside("sleep")
    if seconds.__class__ is not float and seconds.__class__ is not int:
        seconds = _seconds(seconds)
    if seconds != seconds:  # NaN: a deadline that is never due and never passed
        raise ValueError("sleep() needs a number of seconds, got nan")
    yield (SLEEP, seconds, None)


def _seconds(seconds: Any) -> float:
    """``sleep``'s argument when it is not a plain int or float, as a float; a clear
    error for what is not a real number (a string, None), raised in the calling task."""
    if isinstance(seconds, numbers.Real):
        return float(seconds)
    raise TypeError(f"sleep() needs a number of seconds, got {seconds!r}")


@types.coroutine
def suspend(
    waiting_for: str, token: object, cancel: Callable[[], bool | None] | None
) -> Generator[tuple, Any, Any]:
    """Sleep until another thread calls ``Kernel.wake_threadsafe(task, token, ...)``."""
    if state.kernel is None:
        raise _outside(waiting_for)
    return (yield (SUSPEND, waiting_for, token, cancel))


@types.coroutine
def pass_through(trap: tuple) -> Generator[tuple, Any, Any]:
    """Hand a trap tuple yielded by a generator-style task on to the kernel."""
    return (yield trap)
