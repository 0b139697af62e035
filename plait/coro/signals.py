"""Waiting for Unix signals inside a task.

The kernel already listens to the signal wake-up fd (``signal.set_wakeup_fd``): the C
handler writes the signal number there and the kernel's loop reads it. A
:class:`SignalQueue` asks the kernel to pass it the numbers of the signals it watches, and
installs a Python-level handler that does nothing (so the default action — often "end the
process" — does not happen) for as long as it is open. A watched SIGINT goes to the queue
instead of cancelling the main task.

Queues may overlap: two tasks can wait for the same signal, and leave in any order. A
handler is process-wide, so each queue saving and restoring "the previous handler" would
restore another queue's no-op, or the default action while a queue still waits. Instead
the first queue to watch a signal saves the handler it replaces (in ``_saved``) and
installs the no-op; the last one to leave puts the saved handler back. The kernel's
``signal_watchers[signo]`` lists the queues that watch ``signo``, so it is the count.
One table serves the process, because only the main thread can set handlers and one
kernel at a time runs there. A queue that cannot watch one of its signals (SIGKILL, say)
leaves the ones it already watches before it raises, so it holds nothing.

Signal handlers can only be set in the main thread, so this works when ``run()`` runs
there; elsewhere it raises ``RuntimeError`` saying so.
"""

from __future__ import annotations

import signal as _signal
import threading
from collections import deque
from typing import Any

from . import traps

__all__ = ["SignalQueue", "wait_signal"]


def _ignore(signo: int, frame: Any) -> None:
    """Python-level handler: the kernel picks the signal up from the wake-up fd."""


# signal number -> the handler the first watcher replaced, while any queue watches it
_saved: dict[int, Any] = {}


def _watch(kernel: Any, signo: int, queue: SignalQueue) -> None:
    """Add ``queue`` to the watchers of ``signo``; the first one installs the no-op."""
    watchers = kernel.signal_watchers.get(signo)
    if not watchers:
        _saved[signo] = _signal.signal(signo, _ignore)
        watchers = kernel.signal_watchers[signo] = []
    watchers.append(queue)


def _unwatch(kernel: Any, signo: int, queue: SignalQueue) -> None:
    """Take ``queue`` off the watchers of ``signo``; the last one restores the handler."""
    watchers = kernel.signal_watchers[signo]
    watchers.remove(queue)
    if not watchers:
        del kernel.signal_watchers[signo]
        _signal.signal(signo, _saved.pop(signo))


class SignalQueue:
    """``async with SignalQueue(signal.SIGUSR1, ...) as q: signo = await q.get()``."""

    def __init__(self, *signals: int) -> None:
        if not signals:
            raise ValueError("SignalQueue needs at least one signal number")
        # once each: the queue is one watcher of each of its signals
        self.signals = tuple(dict.fromkeys(_signal.Signals(s) for s in signals))
        self._received: deque[int] = deque()
        self._waiters: deque = deque()
        self._watching: list[int] = []
        self._kernel: Any = None

    def __repr__(self) -> str:
        names = ", ".join(s.name for s in self.signals)
        return f"<SignalQueue {names}, {len(self._received)} pending>"

    def deliver(self, signo: int) -> None:
        """Kernel hook: ``signo`` arrived."""
        if self._waiters:
            self._kernel.wake(self._waiters.popleft(), _signal.Signals(signo))
        else:
            self._received.append(signo)

    async def __aenter__(self) -> SignalQueue:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("signals can only be waited for when run() runs in the main thread")
        k = traps.kernel()
        self._kernel = k
        try:
            for signo in self.signals:
                _watch(k, int(signo), self)
                self._watching.append(int(signo))
        except BaseException:
            self._leave()
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._leave()

    def _leave(self) -> None:
        while self._watching:
            _unwatch(self._kernel, self._watching.pop(), self)

    async def get(self) -> _signal.Signals:
        """The next signal that arrived; blocks until one does."""
        if not self._watching:
            raise RuntimeError("SignalQueue.get() outside its async with block")
        if self._received:
            return _signal.Signals(self._received.popleft())
        return await traps.park(self._waiters, "SIGNAL_WAIT")


async def wait_signal(*signals: int) -> _signal.Signals:
    """Block until one of ``signals`` arrives; return it. ``await wait_signal(SIGTERM)``."""
    async with SignalQueue(*signals) as q:
        return await q.get()
