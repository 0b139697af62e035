"""Bridges to asyncio: ``from_asyncio`` (a plait task awaits asyncio code) and
``to_asyncio`` (asyncio code awaits a plait coroutine).

The two worlds never share a thread. A plait kernel and an asyncio loop each own one
thread and one epoll, and a bridged call is a message from one thread to the other and an
answer back. Each direction of a message is a deque plus a wake-up that is sent only when
the receiver is not already due to drain the deque (``universal.LoopInbox`` towards an asyncio
loop, ``Kernel.wake_threadsafe`` towards a kernel): a burst of calls costs one wake-up of
each thread, not one per call.

``from_asyncio``. Each kernel owns at most one asyncio loop, run by a helper thread that
the first call starts and that the kernel stops when ``run()`` returns: the tasks still
running on it are cancelled and waited for (``JOIN_TIMEOUT``), its async generators and
default executor are shut down, the loop is closed and the thread joined. A call adds
the awaitable to the kernel's batch for the loop and suspends the task (``SUSPEND``). A
daemon flusher task, woken by the first call of a pass of the kernel's loop, runs after
the other tasks of that pass and hands the whole batch over: the loop's thread wakes once
per pass and does not compete for the interpreter while the kernel still has work. The
calls of one plait task run one after another in one asyncio task, its twin, which hands
each outcome back and waits for the next call: as an asyncio task awaits its driver's
calls in a row, they see one ``asyncio.current_task()`` and one context (a context
variable one call sets, the next call of that plait task sees; another task's calls do
not), and a call costs no asyncio task of its own (measured: 10% more bridged requests
per second than a task per call). The twin ends when its plait task ends (the kernel's
``end_hooks``; until then an idle twin is one of ``asyncio.all_tasks()``), or after a
call that was cancelled or raised a ``BaseException`` that is not an ``Exception``: the
task's next call gets a new one. A call handed to a twin that asyncio code cancels
before the twin could begin it is answered with :class:`BridgeCancelled`, not lost.
An exception raised by the asyncio code arrives in the plait task as it was raised, its
traceback intact.

Cancellation across. Cancelling the plait task (or an expired ``timeout_after``)
cancels the twin's asyncio task and keeps the plait task waiting until the asyncio side has
finished, so its ``finally`` blocks and ``async with`` exits have run before the plait
task goes on; the cancel hook answers "too late" to the kernel to get exactly that. The
plait task then raises its cancellation even if the asyncio side swallowed its
``CancelledError`` and returned a value: the value is dropped, as asyncio's own
``timeout`` and ``TaskGroup`` do since 3.11. If the asyncio side has not finished
``cancel_timeout`` seconds later (it ignores the cancellation), the plait task stops
waiting, a warning names the call, and the asyncio task is left to the loop's shutdown,
which cancels it once more and waits ``CANCEL_TIMEOUT`` at most. The bound is a timer of
the loop, in real time, whatever clock the kernel runs on. An asyncio task cancelled by
asyncio code (not by the plait task) is not a plait cancellation: it raises
:class:`BridgeCancelled`.

``to_asyncio``. Each asyncio loop that uses it gets one plait kernel in a helper thread. Its
main task takes calls from a ``UniversalQueue`` and runs each as a daemon task; the answer
goes back through the loop's ``LoopInbox``. The kernel ends when the loop ends: a keeper,
an asynchronous generator of the loop (not a task, so code that cancels or awaits every
other task never meets it), is closed by ``loop.shutdown_asyncgens()``, which
``asyncio.run`` calls once its cancel sweep is over. The tasks of that sweep may clean up
through ``to_asyncio``; the keeper waits until no call is in flight, and only then closes
the kernel, which cancels what the calls spawned; a call made after that raises
``RuntimeError``. A loop closed without ``shutdown_asyncgens`` (``run_until_complete`` and
``close``) leaves its keeper suspended: the loop holds its keeper, and neither the kernel
nor its thread holds the loop, so the kernel closes when the loop is collected
(``weakref.finalize``), its thread and fds with it: the finalizer, which runs inside the
garbage collector, takes no lock, it wakes a watcher task of the kernel. An ``atexit`` hook
closes the kernels of loops still alive at exit. A kernel that stops by itself (one of its
tasks raised ``SystemExit``) answers its calls with :class:`BridgeCancelled` and leaves the
loop, whose next call starts a new one. Cancelling the awaiting asyncio task cancels the
plait task and waits (``cancel_timeout``, bounded) for it to end.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import inspect
import logging
import queue
import threading
import weakref
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from concurrent.futures import CancelledError
from typing import Any

from . import traps
from .errors import TaskCancelled
from .kernel import run
from .task import as_coroutine, spawn
from .universal import LoopInbox, UniversalQueue

__all__ = ["BridgeCancelled", "from_asyncio", "to_asyncio"]

log = logging.getLogger("plait.coro")

CANCEL_TIMEOUT = 5.0  # how long a cancelled call waits for the other side to finish
JOIN_TIMEOUT = 30.0  # how long closing a helper thread waits for its work to end


class BridgeCancelled(CancelledError):
    """The other side of a bridged call was cancelled by its own world, not by the caller
    (asyncio code cancelled the asyncio task of a ``from_asyncio`` call, or the kernel of a
    ``to_asyncio`` call shut down). A ``concurrent.futures.CancelledError``, as joining a
    cancelled plait task raises; never a cancellation of the caller itself."""


# -- from_asyncio: a plait task awaits asyncio code --------------------------------------


class _AsyncioLoop:
    """The asyncio loop of one kernel and the helper thread that runs it."""

    def __init__(self, kernel: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.inbox = LoopInbox.of(self.loop)
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="plait.coro-asyncio", daemon=True)
        self._thread.start()
        kernel.closers.append(self.close)
        self._kernel = kernel
        self._batch: list[tuple[Callable[[Any], Any], Any]] = []
        self._flusher_idle: deque = deque()
        self._flusher = kernel.start(self._flush_forever(), "plait.coro-asyncio flusher", True)
        self._twins: dict[int, _Twin] = {}  # plait task id -> its twin (loop's thread)

    # -- in the kernel's thread: what its tasks send to the loop, one batch per pass --

    def call(self, call: _Call) -> None:
        """Have the calling task's twin run ``call``; the twin ends with the task."""
        hooks = self._kernel.end_hooks  # a task's hook is there until the task ends
        if call.task.id not in hooks:
            hooks[call.task.id] = self._task_ended
        self.send(self._start, call)

    def _task_ended(self, task: Any) -> None:
        """Kernel end hook of a task that made calls: its twin ends too."""
        self.send(self._end_twin, task.id)

    def send(self, fn: Callable[[Any], Any], arg: Any) -> None:
        """Have the loop run ``fn(arg)``, after what was sent before. Never blocks."""
        batch = self._batch
        batch.append((fn, arg))
        if len(batch) == 1:
            if self._flusher_idle:
                self._kernel.wake(self._flusher_idle.popleft(), None)
            elif self._flusher.terminated:
                self._flush()  # the kernel is ending: nobody will flush later

    async def _flush_forever(self) -> None:
        """Woken by the first ``send`` of a pass, it runs after the tasks of that pass: the
        loop's thread wakes once for all they sent, not while the kernel is still busy."""
        try:
            while True:
                self._flush()
                await traps.park(self._flusher_idle, "ASYNCIO_FLUSH")
        finally:
            self._flush()

    def _flush(self) -> None:
        if self._batch:
            batch, self._batch = self._batch, []
            self.inbox.call(_run_all, batch)

    # -- in the loop's thread ----------------------------------------------------------

    def _start(self, call: _Call) -> None:
        """Give ``call`` to its task's twin: the idle one, or a new one."""
        twin = self._twins.get(call.task.id)
        if twin is not None and twin.next is not None and not twin.next.done():
            call.twin = twin
            twin.call = call
            twin.next.set_result(call)
            return
        if twin is not None:  # busy with a call its task gave up on: left to end alone
            twin.ending = True
        twin = self._twins[call.task.id] = _Twin(call.task.id)
        call.twin = twin
        twin.call = call
        twin.task = self.loop.create_task(
            self._serve(twin, call), name=f"plait.coro task {call.task.id} (from_asyncio)"
        )
        twin.task.add_done_callback(functools.partial(self._twin_ended, twin))

    def _end_twin(self, task_id: int) -> None:
        twin = self._twins.get(task_id)
        if twin is not None:
            self._retire(twin)

    def _twin_ended(self, twin: _Twin, _: asyncio.Task) -> None:
        """Done callback of a twin's task: a call it was handed and never began (asyncio
        code cancelled the twin before it could resume) is answered, not lost."""
        self._retire(twin)
        call, twin.call = twin.call, None
        if call is not None and call.state == _WAITING:
            if inspect.iscoroutine(call.aw):
                call.aw.close()
            call.answer(None, asyncio.CancelledError("its asyncio task was cancelled first"))

    def _retire(self, twin: _Twin) -> None:
        """``twin`` takes no more calls (it is ending, or its call was cancelled)."""
        if self._twins.get(twin.task_id) is twin:
            del self._twins[twin.task_id]
        twin.retire()

    async def _serve(self, twin: _Twin, call: _Call) -> None:
        """A twin: the calls of one plait task, one after another, in one asyncio task."""
        loop = self.loop
        while True:
            if call.state == _WAITING:  # not answered already (cancelled before it began)
                call.state = _RUNNING
                try:
                    aw = call.aw
                    if call.fn is not None:
                        aw = call.fn(*call.args)
                        if not inspect.isawaitable(aw):
                            raise TypeError(
                                f"from_asyncio: {call.fn!r} returned {type(aw).__name__} "
                                f"{aw!r:.60}, which is not awaitable"
                            )
                    value = await aw
                except BaseException as e:  # handed to the awaiting task, raised there
                    if call.abandoned and not isinstance(e, asyncio.CancelledError | GeneratorExit):
                        log.error("%r failed after its task stopped waiting", call, exc_info=e)
                    call.answer(None, e)
                    if isinstance(e, asyncio.CancelledError):
                        raise  # the twin ends: its done-callback retires it
                    if not isinstance(e, Exception):
                        return
                else:
                    call.answer(value, None)
            if twin.ending:
                return
            # nothing of the last call is held while the twin waits for the next
            call = twin.call = value = aw = None
            twin.next = next_call = loop.create_future()
            call = await next_call
            twin.next = None
            if call is None:  # its plait task ended
                return

    def _run(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)  # for asyncio code that asks get_event_loop()
        try:
            while not self._closing:
                try:
                    loop.run_forever()
                except (KeyboardInterrupt, SystemExit):
                    # raised by a callback (a call's own errors go to its task): the loop
                    # serves the kernel's other calls on; the kernel has its own Ctrl-C
                    log.exception("asyncio code on the kernel's loop raised; the loop goes on")
            loop.run_until_complete(self._shutdown())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    async def _shutdown(self) -> None:
        """Cancel what still runs on the loop (calls whose plait side gave up), bounded:
        those were cancelled and waited for already, so they get ``CANCEL_TIMEOUT`` more,
        well within the ``JOIN_TIMEOUT`` that ``close`` waits for the thread."""
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=CANCEL_TIMEOUT)
            for task in pending:
                log.warning("asyncio task %r ignored its cancellation; left behind", task)
        await self.loop.shutdown_asyncgens()
        await self.loop.shutdown_default_executor()

    def _stop(self, _: object) -> None:
        self._closing = True
        self.loop.stop()

    def close(self) -> None:
        """Kernel closer: stop the loop, let it finish its tasks, join the thread."""
        self.inbox.call(self._stop, None)
        self._thread.join(JOIN_TIMEOUT)
        if self._thread.is_alive():
            log.warning("%s still runs after %g s; left behind", self._thread.name, JOIN_TIMEOUT)


def _run_all(batch: list[tuple[Callable[[Any], Any], Any]]) -> None:
    for fn, arg in batch:
        fn(arg)


# what the loop did with a call (``_Call.state``)
_WAITING, _RUNNING, _ANSWERED = 0, 1, 2


class _Twin:
    """The asyncio task that runs the ``from_asyncio`` calls of one plait task, one after
    another, as an asyncio handler awaits its driver's calls in its own task: the calls
    see one ``current_task()`` and one context, and each costs no task of its own.
    It ends when its plait task ends, or after a call that was cancelled."""

    __slots__ = ("task_id", "task", "call", "next", "ending")

    def __init__(self, task_id: int) -> None:
        self.task_id = task_id
        self.task: asyncio.Task | None = None
        self.call: _Call | None = None  # the call it was handed, until it has answered it
        self.next: asyncio.Future | None = None  # set while it waits for its next call
        self.ending = False

    def retire(self) -> None:
        """Take no more calls: end now if idle, else after the call it runs."""
        self.ending = True
        if self.next is not None and not self.next.done():
            self.next.set_result(None)


class _Call:
    """One ``from_asyncio`` call: the plait task waiting, the twin running it.

    The wait after a cancellation is bounded on the loop, in real time (``loop.call_later``,
    ``give_up``), whatever clock the kernel runs on: the bound is about the asyncio side.
    """

    __slots__ = (
        "kernel",
        "task",
        "aw",
        "fn",
        "args",
        "twin",
        "cancel_timeout",
        "state",
        "cancelling",
        "abandoned",
        "bound",
    )

    def __init__(
        self, kernel: Any, aw: Any, fn: Any, args: tuple, cancel_timeout: float | None
    ) -> None:
        self.kernel = kernel
        self.task = kernel.current
        self.aw = aw
        self.fn = fn
        self.args = args
        self.twin: _Twin | None = None
        self.cancel_timeout = cancel_timeout
        self.state = _WAITING
        self.cancelling = False
        self.abandoned = False
        self.bound: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        what = self.aw if self.fn is None else getattr(self.fn, "__qualname__", self.fn)
        return f"from_asyncio({what!r})"

    # -- on the asyncio loop -----------------------------------------------------------

    def answer(self, value: Any, exc: BaseException | None) -> None:
        self.state = _ANSWERED
        if self.bound is not None:
            self.bound.cancel()
        self.kernel.wake_threadsafe(self.task, self, value, exc)

    def cancel_twin(self, bridge: _AsyncioLoop) -> None:
        """Cancel what the twin runs of this call (``_start`` ran first: the inbox keeps
        the order of calls); the twin then ends: a new one takes the task's next call."""
        if self.state == _ANSWERED:
            return
        bridge._retire(self.twin)
        if self.state == _WAITING:  # cancelled before it began: it never will
            if inspect.iscoroutine(self.aw):
                self.aw.close()
            self.answer(None, asyncio.CancelledError())
            return
        self.twin.task.cancel()
        if self.cancel_timeout is not None:
            self.bound = bridge.loop.call_later(self.cancel_timeout, self.give_up)

    def give_up(self) -> None:
        """On the loop, ``cancel_timeout`` s after the cancellation: stop the wait."""
        if self.state != _ANSWERED:
            self.abandoned = True
            self.kernel.wake_threadsafe(
                self.task,
                self,
                None,
                asyncio.CancelledError(f"gave up waiting {self.cancel_timeout:g} s for it"),
            )

    # -- in the kernel's thread --------------------------------------------------------

    def cancel(self) -> bool:
        """Cancel hook: cancel the asyncio side, keep the task waiting for its end."""
        if not self.cancelling:
            self.cancelling = True
            bridge = self.kernel.asyncio_loop
            bridge.send(self.cancel_twin, bridge)
        return False


def _asyncio_loop(kernel: Any) -> _AsyncioLoop:
    """The kernel's asyncio loop, started on first use and closed with the kernel."""
    bridge = getattr(kernel, "asyncio_loop", None)
    if bridge is None:
        bridge = kernel.asyncio_loop = _AsyncioLoop(kernel)
    return bridge


async def from_asyncio(
    aw: Awaitable | Callable[..., Awaitable],
    *args: Any,
    cancel_timeout: float | None = CANCEL_TIMEOUT,
) -> Any:
    """Await ``aw`` (or ``aw(*args)``) on the kernel's asyncio loop; return its result.

    ``aw`` is an asyncio awaitable (a coroutine, an ``asyncio.Future`` of that loop, an
    object with ``__await__``) or a function that returns one, called on the loop. Make
    objects that bind to their loop (a client session, an ``asyncio.Queue``) in an async
    function run this way; they then serve every later call of the kernel. The calls of
    one task run in one asyncio task, in order: they share ``asyncio.current_task()`` and
    the context (context variables), as the awaits of one asyncio task do; after a call
    that was cancelled, or that raised a ``BaseException`` that is not an ``Exception``,
    the next call starts in a new asyncio task, with a new context. Blocks the
    task (never the kernel) until the asyncio side ends. A blocking point: cancellation
    cancels the asyncio side and waits up to ``cancel_timeout`` s (real time, whatever the
    kernel's clock; None: no limit) for it to finish, then raises the cancellation (the
    timeout) even if the asyncio side swallowed its own and returned: that value is dropped.

    Raises what the asyncio code raised (its traceback kept), :class:`BridgeCancelled`
    if asyncio code cancelled it, ``TypeError`` if ``aw`` is not awaitable, and
    ``TypeError`` / ``ValueError`` for a ``cancel_timeout`` that is not a number >= 0.

    >>> import asyncio
    >>> from plait.coro import run, timeout_after
    >>> async def fetch(sql):  # asyncio code, such as a database driver's call
    ...     await asyncio.sleep(0.01)
    ...     return [(1,)]
    >>> async def main():
    ...     async with timeout_after(5):
    ...         return await from_asyncio(fetch, "SELECT 1")
    >>> run(main)
    [(1,)]
    """
    try:
        _check_cancel_timeout("from_asyncio", cancel_timeout)
        k = traps.kernel()
        if inspect.isawaitable(aw):
            if args:
                raise TypeError("from_asyncio: arguments given with an awaitable; pass a function")
            fn = None
        elif callable(aw):
            fn, aw = aw, None
        else:
            raise TypeError(
                f"from_asyncio needs an asyncio awaitable (a coroutine, a future, an object "
                f"with __await__) or a function returning one, not {type(aw).__name__}: "
                f"{aw!r:.60}"
            )
    except BaseException:
        if inspect.iscoroutine(aw):
            aw.close()  # given to the bridge, which will not run it
        raise
    call = _Call(k, aw, fn, args, cancel_timeout)
    _asyncio_loop(k).call(call)
    try:
        value = await traps.suspend("ASYNCIO_WAIT", call, call.cancel)
    except asyncio.CancelledError as e:
        if call.cancelling:
            if call.abandoned:
                log.warning(
                    "%r did not finish %g s after its cancellation; left running",
                    call,
                    call.cancel_timeout,
                )
            await traps.sleep(0)  # delivers this task's cancellation, pending since the hook
        raise BridgeCancelled(f"{call!r} was cancelled by asyncio code, not by this task") from e
    except TaskCancelled:
        # thrown at the trap itself (the cancellation was pending before the task could
        # wait), so the hook never ran: cancel the asyncio side and wait for it now
        call.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await traps.suspend("ASYNCIO_WAIT", call, call.cancel)
        raise
    if call.cancelling:  # the asyncio side swallowed the cancellation and returned:
        await traps.sleep(0)  # this task's cancellation stands; the value is dropped
    return value


def _check_cancel_timeout(who: str, cancel_timeout: float | None) -> None:
    """``cancel_timeout`` is a number of seconds >= 0, or None for no limit."""
    if cancel_timeout is None:
        return
    if isinstance(cancel_timeout, bool) or not isinstance(cancel_timeout, int | float):
        raise TypeError(
            f"{who}: cancel_timeout must be a number of seconds or None (no limit), "
            f"not {type(cancel_timeout).__name__}: {cancel_timeout!r:.60}"
        )
    if not cancel_timeout >= 0:
        raise ValueError(f"{who}: cancel_timeout must be >= 0, not {cancel_timeout!r}")


# -- to_asyncio: asyncio code awaits a plait coroutine -----------------------------------


class _PlaitCall:
    """One ``to_asyncio`` call: the asyncio side waits on ``waiter`` for ``outcome``."""

    __slots__ = ("fn", "args", "waiter", "outcome", "task", "cancelled")

    def __init__(self, fn: Any, args: tuple, waiter: asyncio.Future) -> None:
        self.fn = fn
        self.args = args
        self.waiter = waiter
        self.outcome: tuple[Any, BaseException | None] | None = None
        self.task: Any = None
        self.cancelled = False  # by its asyncio side

    def finish(self, outcome: tuple[Any, BaseException | None]) -> None:
        """On the loop: the plait side ended (the first answer counts)."""
        if self.outcome is None:
            self.outcome = outcome
        if not self.waiter.done():
            self.waiter.set_result(None)


class _PlaitKernel:
    """A plait kernel in a helper thread, serving the ``to_asyncio`` calls of one loop.

    ``closed`` (under ``_lock``): it takes no more calls. Either its loop is shutting down
    (it stays the loop's kernel, so a late call raises instead of starting another) or its
    kernel stopped by itself (a task raised ``SystemExit``: it leaves ``_of``, and the loop's
    next call starts a new kernel). Every call put before ``closed`` is answered.
    """

    _of: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    _lock = threading.Lock()

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)
        self.inbox = LoopInbox.of(loop)
        self.requests = UniversalQueue()
        self.closed = False
        self.busy = 0  # to_asyncio calls not yet returned (counted in the loop's thread)
        self._idle: asyncio.Future | None = None
        ended = loop.create_future()  # held by the keeper; the kernel's thread must not
        self._ended = weakref.ref(ended)  # hold the loop, or a loop closed by hand never goes
        self.loop_gone = False
        self._watcher: tuple[Any, Any] | None = None  # (kernel, task) once the kernel runs
        self._thread = threading.Thread(
            target=self._run, name="plait.coro-for-asyncio", daemon=True
        )
        self._thread.start()
        keeper = self._keep(ended)
        try:  # to its first yield: the loop's first-iteration hook makes it one of its own
            keeper.asend(None).send(None)
        except StopIteration:
            pass
        self._keeper: AsyncGenerator | None = None
        try:  # the loop holds its keepers (a cycle, collected with the loop; a keeper holds
            # its loop through the finalizer hook asyncio gave it): a kernel that stopped by
            # itself and the one that replaced it each keep theirs until the loop ends...
            loop.__dict__.setdefault("_plait_to_asyncio_keepers", []).append(keeper)
        except AttributeError:  # ...or, for a loop without attributes, the kernel does
            self._keeper = keeper  # (that loop and kernel then go at exit, by the atexit hook)
        self._gone = weakref.finalize(loop, self._loop_gone)
        self._gone.atexit = False  # at exit ``_close_kernels`` closes and joins

    @classmethod
    def submit(cls, loop: asyncio.AbstractEventLoop, call: _PlaitCall) -> _PlaitKernel:
        """Hand ``call`` to the plait kernel of ``loop`` (started on first use)."""
        with cls._lock:
            kernel = cls._of.get(loop)
            if kernel is None:
                kernel = cls._of[loop] = cls(loop)
            elif kernel.closed:
                raise RuntimeError(
                    "to_asyncio: this asyncio loop is shutting down; its plait kernel is closed"
                )
            kernel.requests.put(call)
        kernel.busy += 1
        return kernel

    def cancel_call(self, call: _PlaitCall) -> None:
        """Have the kernel cancel the plait side of ``call`` (answered anyway if closed)."""
        with self._lock:
            if not self.closed:
                self.requests.put(call)

    def call_ended(self) -> None:
        self.busy -= 1
        if not self.busy and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    def _run(self) -> None:
        try:
            run(self._serve)
        except BaseException as e:  # SystemExit and the like: the thread's end, not the process's
            log.error("the plait kernel of an asyncio loop stopped: %r", e, exc_info=e)
        finally:
            self._stopped()
            while True:
                try:
                    call = self.requests.get(block=False)
                except queue.Empty:
                    break
                if call is not None and call.task is None:
                    stopped = BridgeCancelled("the plait kernel of this asyncio loop stopped")
                    self.inbox.call(call.finish, (None, stopped))
            ended = self._ended()
            if ended is not None:
                self.inbox.resolve(ended)

    def _stopped(self) -> None:
        """The kernel stops by itself (one of its tasks raised ``SystemExit``), not by its
        loop: it takes no more calls, and the loop's next call starts a new kernel."""
        with self._lock:
            if not self.closed:
                self.closed = True
                loop = self._loop()
                if loop is not None and self._of.get(loop) is self:
                    del self._of[loop]

    async def _serve(self) -> None:
        k = traps.kernel()
        self._watcher = (k, k.start(self._watch(), "plait.coro to_asyncio loop watcher", True))
        while True:
            call = None  # the last call (its future, its loop) is not held while waiting
            call = await self.requests.get_async()
            if call is None:
                # the loop ends and no call is in flight: what its calls spawned goes too
                k = traps.kernel()
                for task in list(k.tasks.values()):
                    if task is not k.current:
                        await task.cancel(blocking=False)
                return
            if call.task is None:
                call.task = await spawn(self._call, call, daemon=True)
            else:
                call.cancelled = True
                await call.task.cancel(blocking=False)

    async def _call(self, call: _PlaitCall) -> None:
        try:
            coro, _ = as_coroutine(call.fn, call.args)
            outcome = (await coro, None)
        except TaskCancelled as e:
            k = traps.kernel()
            if not call.cancelled and (k._fatal is not None or k._deadlock is not None):
                # the kernel stops (a task raised SystemExit, say), before the answer: the
                # caller's next call finds a new kernel. Plait code that cancelled this
                # task leaves the kernel serving, and it stays the loop's.
                self._stopped()
            cancelled = BridgeCancelled(f"the plait side of a to_asyncio call: {e}")
            cancelled.__cause__ = e  # where plait cancelled it
            self.inbox.call(call.finish, (None, cancelled))
            raise
        except BaseException as e:  # handed to the awaiting asyncio task, raised there
            outcome = (None, e)
        self.inbox.call(call.finish, outcome)

    def _close_requests(self) -> None:
        with self._lock:
            self.closed = True
        self.requests.put(None)

    def _loop_gone(self) -> None:
        """The loop was collected, its keeper with it. This runs in the garbage collector,
        maybe in a thread that holds ``_lock`` or the lock of ``requests``: it takes no
        lock, it only wakes the watcher, which closes the kernel from the kernel's thread."""
        self.loop_gone = True
        watcher = self._watcher
        if watcher is not None:
            watcher[0].wake_threadsafe(watcher[1], self)

    async def _watch(self) -> None:
        if not self.loop_gone:  # else the loop went before this task first ran
            await traps.suspend("ASYNCIO_LOOP_GONE", self, None)
        self._close_requests()

    async def _keep(self, ended: asyncio.Future) -> AsyncGenerator[None, None]:
        """An asynchronous generator of the loop: the loop closes it when it ends, in
        ``loop.shutdown_asyncgens()``, which ``asyncio.run`` calls once its cancel sweep is
        over (and a loop closed with care calls too). Then the kernel closes, once the
        calls in flight have ended. Not a task, so code that cancels, or waits for, every
        other task of a loop that goes on never meets it. ``ended``: the kernel's thread
        ended."""
        try:
            yield
        finally:
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # closed by the collector, not by its loop: no awaiting
                self._loop_gone()
                return
            try:
                while self.busy:
                    self._idle = asyncio.get_running_loop().create_future()
                    await self._idle
            finally:
                self._close_requests()
                with contextlib.suppress(asyncio.TimeoutError):  # close() says it
                    await asyncio.wait_for(asyncio.shield(ended), JOIN_TIMEOUT)
                # the wait above was the bound: a thread that has not ended by now is not
                # waited for again, in the loop's thread
                self.close(JOIN_TIMEOUT if ended.done() else 0)

    def close(self, timeout: float = JOIN_TIMEOUT) -> None:
        """Stop the kernel (its calls are cancelled) and join its thread (``timeout``)."""
        self._gone.detach()
        self._close_requests()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("%s still runs after %g s; left behind", self._thread.name, JOIN_TIMEOUT)
        else:  # it stays the loop's (closed) kernel: it must not keep the loop alive
            self._keeper = self._idle = None


@atexit.register
def _close_kernels() -> None:
    """At interpreter exit: close the kernels of loops that never closed their keeper."""
    for kernel in list(_PlaitKernel._of.values()):
        kernel.close()


async def to_asyncio(
    fn: Callable[..., Any], *args: Any, cancel_timeout: float | None = CANCEL_TIMEOUT
) -> Any:
    """From asyncio code: run the plait coroutine ``fn(*args)`` and return its result.

    The call runs in the plait kernel of the running asyncio loop (a helper thread,
    started on first use and closed with the loop). Blocks the asyncio task, not its loop.
    Cancelling the asyncio task cancels the plait task and waits up to ``cancel_timeout``
    s (None: no limit) for it to end, then raises ``CancelledError`` even if the plait side
    swallowed its cancellation and returned: that value is dropped. Raises what ``fn``
    raised (its traceback kept), :class:`BridgeCancelled` if the plait side was cancelled
    by plait (its kernel shut down), ``RuntimeError`` if the loop is shutting down and its
    kernel already closed, and ``TypeError`` / ``ValueError`` for a ``cancel_timeout``
    that is not a number >= 0.

    >>> import asyncio
    >>> from plait.coro import sleep
    >>> async def double(n):  # plait code
    ...     await sleep(0.01)
    ...     return 2 * n
    >>> async def main():  # asyncio code
    ...     return await to_asyncio(double, 21)
    >>> asyncio.run(main())
    42
    """
    if not callable(fn) and not inspect.iscoroutine(fn):
        raise TypeError(
            f"to_asyncio needs a plait async function (or coroutine), not {type(fn).__name__}"
        )
    try:
        _check_cancel_timeout("to_asyncio", cancel_timeout)
    except (TypeError, ValueError):
        if inspect.iscoroutine(fn):
            fn.close()  # given to the bridge, which will not run it
        raise
    loop = asyncio.get_running_loop()
    call = _PlaitCall(fn, args, loop.create_future())
    try:
        kernel = _PlaitKernel.submit(loop, call)
    except RuntimeError:
        if inspect.iscoroutine(fn):
            fn.close()  # refused: the bridge will not run it
        raise
    try:
        await call.waiter
    except asyncio.CancelledError:
        if call.outcome is None:
            kernel.cancel_call(call)
            call.waiter = loop.create_future()
            try:
                await asyncio.wait_for(call.waiter, cancel_timeout)
            except asyncio.TimeoutError:
                log.warning(
                    "to_asyncio(%r) did not finish %g s after its cancellation; left running",
                    fn,
                    cancel_timeout,
                )
        raise
    finally:
        kernel.call_ended()
    value, exc = call.outcome
    if exc is not None:
        raise exc
    return value
