"""Waiting for Unix signals inside a task.

The kernel already listens to the signal wake-up fd (``signal.set_wakeup_fd``): the C
handler writes the signal number there and the kernel's loop reads it. A
:class:`SignalQueue` asks the kernel to pass it the numbers of the signals it watches, and
installs a Python-level handler that does nothing (so the default action — often "end the
process" — does not happen) for as long as it is open. Closing it restores the previous
handlers. A watched SIGINT goes to the queue instead of cancelling the main task.

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


class SignalQueue:
    """``async with SignalQueue(signal.SIGUSR1, ...) as q: signo = await q.get()``."""

    def __init__(self, *signals: int) -> None:
        if not signals:
            raise ValueError("SignalQueue needs at least one signal number")
        self.signals = tuple(_signal.Signals(s) for s in signals)
        self._received: deque[int] = deque()
        self._waiters: deque = deque()
        self._old: dict[int, Any] = {}
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
        for signo in self.signals:
            self._old[signo] = _signal.signal(signo, _ignore)
            k.signal_watchers.setdefault(int(signo), []).append(self)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for signo, old in self._old.items():
            _signal.signal(signo, old)
            self._kernel.signal_watchers[int(signo)].remove(self)
        self._old.clear()

    async def get(self) -> _signal.Signals:
        """The next signal that arrived; blocks until one does."""
        if not self._old:
            raise RuntimeError("SignalQueue.get() outside its async with block")
        if self._received:
            return _signal.Signals(self._received.popleft())
        return await traps.park(self._waiters, "SIGNAL_WAIT")


async def wait_signal(*signals: int) -> _signal.Signals:
    """Block until one of ``signals`` arrives; return it. ``await wait_signal(SIGTERM)``."""
    async with SignalQueue(*signals) as q:
        return await q.get()
