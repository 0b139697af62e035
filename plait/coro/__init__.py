"""plait.coro: a coroutine kernel for servers with thousands of sockets in one thread.

``run(main)`` drives ``async def`` tasks (and classic generator-style tasks) by ``send()``-ing
into them; a task suspends where it awaits one of plait's traps (``traps.py``): waiting
for a socket, a timer, another task, a thread or a process. Modules, bottom up:

- ``errors``     the exceptions (cancellation, timeouts, closed resources)
- ``traps``      the only doors between a task and the kernel
- ``task``       Task, spawn, current_task, TaskGroup
- ``kernel``     the loop: epoll, timers, cancellation, signals; ``run``
- ``timeouts``   sleep, timeout_after, ignore_after, clock
- ``clock``      MockClock: the kernel's time under a test's control
- ``sync``       Lock, Event, Semaphore, BoundedSemaphore, Condition
- ``queues``     Queue, LifoQueue, PriorityQueue
- ``sockets``    Socket: try the system call, wait only when it would block; SocketStream
- ``streams``    tcp/unix servers and connections, TLS
- ``threads``    run_in_thread on a bounded pool
- ``processes``  run_in_process on a plait process pool; cancelling kills the work
- ``subprocess`` Popen with awaitable pipes, run_process; cancelling kills the child
- ``universal``  UniversalQueue, UniversalEvent: plait tasks, asyncio tasks and threads at once
- ``aio``        from_asyncio, to_asyncio: bridges to asyncio, cancellation carried across
- ``signals``    SignalQueue, wait_signal
- ``monitor``    ps()

Blocking points (where a cancellation or an expired timeout is delivered): every
``await`` on ``sleep``, ``Task.join``/``wait``/``cancel``, a ``TaskGroup`` exit,
``Lock``/``Semaphore``/``Condition`` acquire and wait, ``Event.wait``, queue ``get``/``put``/
``join``, every socket and stream operation except ``close``, ``run_in_thread``,
``run_in_process``, ``Popen.wait``/``communicate`` and ``run_process`` (a cancellation
there kills the child), ``from_asyncio``, the ``*_async`` methods of the universal objects, and
``SignalQueue.get``. Nothing else suspends a task, so code between two of them runs
without interruption.

Every blocking call can be bounded with ``async with timeout_after(seconds):``.

Testing. ``run(main, clock=MockClock(autojump_threshold=0))`` runs every timer of the
kernel (``sleep``, the timeout scopes, ``clock()``) on a mock clock that jumps to the next
deadline whenever the kernel idles, so a test of a 60-second timeout takes milliseconds;
``MockClock().jump(s)`` moves time by hand instead. Sockets, threads and processes keep
real time.

>>> async def gives_up_after_a_minute():
...     try:
...         async with timeout_after(60):
...             await Event().wait()
...     except TaskTimeout:
...         return f"gave up at {clock()} s"
>>> run(gives_up_after_a_minute, clock=MockClock(autojump_threshold=0))
'gave up at 60.0 s'

The pytest plugin ``plait.pytest_plugin`` (installed with plait) runs each ``async def``
test as the main task of its own kernel, with its async fixtures set up and torn down in
that kernel; ``@pytest.mark.plait(clock="autojump")`` runs it on such a clock, and the
fixtures ``plait_mock_clock`` and ``plait_autojump_clock`` hand the test the clock its
kernel runs on. A MockClock serves one kernel at a time and changes only from that
kernel's tasks; anything else raises :class:`MockClockError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plait._core.lazy import lazy_names

from .clock import MockClock, MockClockError
from .errors import (
    ClosedResourceError,
    DeadlockError,
    IncompleteRead,
    NoKernelError,
    ResourceBusy,
    SlowStepWarning,
    TaskCancelled,
    TaskTimeout,
    TimeoutCancelled,
)
from .kernel import Kernel, run
from .monitor import TaskInfo, format_ps, ps
from .queues import LifoQueue, PriorityQueue, Queue
from .signals import SignalQueue, wait_signal
from .sockets import Socket, SocketStream
from .streams import (
    open_connection,
    open_unix_connection,
    serve,
    tcp_server,
    tcp_server_socket,
    unix_server,
    unix_server_socket,
)
from .sync import BoundedSemaphore, Condition, Event, Lock, Semaphore
from .task import Task, TaskGroup, current_task, spawn
from .threads import run_in_thread
from .timeouts import clock, ignore_after, sleep, timeout_after
from .universal import UniversalEvent, UniversalQueue

if TYPE_CHECKING:
    from .aio import BridgeCancelled, from_asyncio, to_asyncio
    from .processes import run_in_process
    from .subprocess import Popen, run_process

# Loaded on first use (PEP 562): the asyncio bridges import asyncio, and run_in_process and
# the subprocesses import plait.pool and plait.process; a kernel that uses none of them
# imports none of that.
_LAZY = {
    "BridgeCancelled": "plait.coro.aio",
    "from_asyncio": "plait.coro.aio",
    "to_asyncio": "plait.coro.aio",
    "run_in_process": "plait.coro.processes",
    "Popen": "plait.coro.subprocess",
    "run_process": "plait.coro.subprocess",
}
__getattr__, __dir__ = lazy_names(__name__, _LAZY, _LAZY)


__all__ = [
    "BoundedSemaphore",
    "BridgeCancelled",
    "ClosedResourceError",
    "Condition",
    "DeadlockError",
    "Event",
    "IncompleteRead",
    "Kernel",
    "LifoQueue",
    "Lock",
    "MockClock",
    "MockClockError",
    "NoKernelError",
    "Popen",
    "PriorityQueue",
    "Queue",
    "ResourceBusy",
    "Semaphore",
    "SignalQueue",
    "SlowStepWarning",
    "Socket",
    "SocketStream",
    "Task",
    "TaskCancelled",
    "TaskGroup",
    "TaskInfo",
    "TaskTimeout",
    "TimeoutCancelled",
    "UniversalEvent",
    "UniversalQueue",
    "clock",
    "current_task",
    "format_ps",
    "from_asyncio",
    "ignore_after",
    "open_connection",
    "open_unix_connection",
    "ps",
    "run",
    "run_in_process",
    "run_in_thread",
    "run_process",
    "serve",
    "sleep",
    "spawn",
    "tcp_server",
    "tcp_server_socket",
    "timeout_after",
    "to_asyncio",
    "unix_server",
    "unix_server_socket",
    "wait_signal",
]
