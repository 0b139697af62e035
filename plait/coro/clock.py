"""MockClock: a kernel's time under a test's control, so a 60 s timeout takes milliseconds.

A kernel reads the time in one place (``Kernel._clock``): ``time.monotonic`` normally,
``MockClock.current_time`` when ``run(main, clock=MockClock(...))`` is given one. Then
``sleep``, ``timeout_after``/``ignore_after``, every kernel timer and ``plait.coro.clock()``
follow the mock clock, and nothing else changes: I/O readiness, threads and processes keep
real time.

The clock's time is ``start + jumps + rate × real seconds since it was made``:

- ``rate=0`` (the default): time stands still and moves only by :meth:`MockClock.jump`,
  called by a task of the kernel;
- ``rate=1`` runs at real speed, ``rate=10`` ten times faster (``await sleep(10)`` ends
  after one real second);
- ``autojump_threshold``: when the kernel is idle (no task is ready and no file, thread
  result or signal arrives) for that many *real* seconds while a timer is armed, the clock
  jumps to that timer. With ``autojump_threshold=0`` a program that only waits for
  timeouts runs at full speed, its tasks seeing the same order of events they would see
  in real time. The wait is real: work finished in a thread, a process or a peer on a
  socket within the threshold arrives before any jump. A thread's work that takes longer
  than the threshold is idle time to the kernel, so a timeout around it may fire in clock
  time first: give such a test a threshold above the thread's work.

How the jump is found. When nothing is ready, the kernel asks the clock
(:meth:`MockClock._idle_timeout`) how long its ``poll()`` may wait for the next timer.
Without autojump that is the timer's distance divided by ``rate`` (forever at rate 0).
With autojump, the clock first waits up to the threshold for the kernel's epoll file to
become readable: every registration is level-triggered and the thread/signal wake-up pipe
is in the same set, so a readable epoll means "something to do" and nothing is consumed
by looking. If the wait ends empty, the clock jumps to the timer and the kernel fires it. The kernel
first drops stale timers (of scopes left early) from the top of its heap, so the clock only
jumps to a deadline a task still waits for, and never to ``math.inf``, which means "no
limit": a kernel whose only timers are there waits like one with none.

Invariants. Time never goes backwards (``jump`` takes seconds ≥ 0; the clock's jumps land
on the deadline, never past a later timer, so timers fire in deadline order). A clock
serves one kernel at a time, and only that kernel's thread changes its time or settings
while it runs: a change from another thread could not wake a kernel asleep in ``poll()``,
so it is refused with :class:`MockClockError`, as is ``jump()`` on a clock that no kernel
runs on. A kernel whose tasks all sleep on a stopped clock (rate 0, no autojump) with
nothing else to wait for can never wake: it raises ``DeadlockError`` instead of hanging.
"""

from __future__ import annotations

import math
import select
import threading
import time

__all__ = ["MockClock", "MockClockError"]

# The longest single wait the clock hands to poll(): the kernel then asks again. Longer
# waits overflow poll()'s millisecond timeout; it is also the largest finite threshold.
_LONGEST_WAIT = 86400.0


class MockClockError(RuntimeError):
    """A MockClock used outside the kernel it drives: no kernel runs on it, it is called
    from another thread than its kernel's, or a second kernel was given it."""


def _seconds(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{what} must be a number of seconds >= 0, got {value!r}")
    return float(value)


class MockClock:
    """A clock for tests: stopped (``jump`` moves it), scaled (``rate``), or jumping to
    the next timer whenever the kernel idles (``autojump_threshold``, in real seconds).
    An hour's sleep that returns at once:

    >>> from plait.coro import clock, run, sleep
    >>> async def main():
    ...     await sleep(3600)
    ...     return clock()
    >>> run(main, clock=MockClock(autojump_threshold=0))
    3600.0
    """

    __slots__ = (
        "_rate",
        "_autojump_threshold",
        "_base",
        "_kernel",
        "_thread",
        "_thread_name",
        "_watch",
    )

    def __init__(
        self, rate: float = 0.0, autojump_threshold: float = math.inf, start: float = 0.0
    ) -> None:
        if (
            isinstance(start, bool)
            or not isinstance(start, int | float)
            or not math.isfinite(start)
        ):
            raise ValueError(f"start must be a finite number of seconds, got {start!r}")
        self._rate = _seconds(rate, "rate")
        if self._rate == math.inf:
            raise ValueError("rate must be finite")
        self._autojump_threshold = self._threshold(autojump_threshold)
        # (clock time, real time) of the last jump or rate change: one tuple, so that a
        # reader in another thread never sees half of a change
        self._base = (float(start), time.monotonic())
        self._kernel: object = None  # the kernel this clock drives, while it runs
        self._thread: int | None = None  # ident of that kernel's thread
        self._thread_name = ""
        self._watch = select.poll()  # watches that kernel's epoll fd

    def __repr__(self) -> str:
        return (
            f"<MockClock time={self.current_time():.6g} rate={self._rate:g} "
            f"autojump_threshold={self._autojump_threshold:g}>"
        )

    @staticmethod
    def _threshold(value: float) -> float:
        value = _seconds(value, "autojump_threshold")
        if _LONGEST_WAIT < value < math.inf:
            raise ValueError(
                f"autojump_threshold must be at most {_LONGEST_WAIT:g} s or math.inf (never "
                f"jump), got {value!r}"
            )
        return value

    def current_time(self) -> float:
        """The clock's time in seconds. Never blocks; any thread may read it."""
        now, real = self._base
        rate = self._rate
        return now + (time.monotonic() - real) * rate if rate else now

    def _set(self, now: float) -> None:
        self._base = (now, time.monotonic())

    @property
    def rate(self) -> float:
        """Clock seconds per real second (0: the clock stands still between jumps)."""
        return self._rate

    @rate.setter
    def rate(self, rate: float) -> None:
        rate = _seconds(rate, "rate")
        if rate == math.inf:
            raise ValueError("rate must be finite")
        self._check_thread("rate = ...", attached=False)
        self._set(self.current_time())
        self._rate = rate

    @property
    def autojump_threshold(self) -> float:
        """Real seconds of kernel idleness after which the clock jumps to the next timer
        (``math.inf``: never)."""
        return self._autojump_threshold

    @autojump_threshold.setter
    def autojump_threshold(self, seconds: float) -> None:
        seconds = self._threshold(seconds)
        self._check_thread("autojump_threshold = ...", attached=False)
        self._autojump_threshold = seconds

    def jump(self, seconds: float) -> None:
        """Move the clock ``seconds`` (≥ 0) forward; timers now due fire at the kernel's
        next step. Call it from a task of the kernel this clock drives; raises
        :class:`MockClockError` otherwise."""
        seconds = _seconds(seconds, "jump()")
        if seconds == math.inf:
            raise ValueError("jump() needs a finite number of seconds")
        self._check_thread("jump()", attached=True)
        self._set(self.current_time() + seconds)

    def _check_thread(self, what: str, attached: bool) -> None:
        """Refuse a change from outside the kernel this clock drives (``attached``: also
        when it drives none)."""
        if self._thread is None:
            if attached:
                raise MockClockError(
                    f"MockClock.{what}: no kernel runs on this clock; pass it to "
                    f"plait.coro.run(main, clock=clock) and call {what} from one of its tasks"
                )
        elif self._thread != threading.get_ident():
            raise MockClockError(
                f"MockClock.{what} called from thread {threading.current_thread().name!r}, "
                f"but the clock drives the kernel of thread {self._thread_name!r}: only that "
                "kernel's tasks may change it"
            )

    # -- the kernel's side -------------------------------------------------------------

    def _attach(self, kernel: object, epoll_fileno: int) -> None:
        """``kernel`` starts on this clock, in this thread, with this epoll fd."""
        if self._kernel is not None:
            raise MockClockError(
                f"{self!r} already drives the kernel of thread {self._thread_name!r}; a "
                "clock serves one kernel at a time: give each kernel its own MockClock"
            )
        self._kernel = kernel
        self._thread = threading.get_ident()
        self._thread_name = threading.current_thread().name
        self._watch.register(epoll_fileno, select.POLLIN)

    def _detach(self, kernel: object) -> None:
        """``kernel`` is closing; the clock is free again if it drove that one."""
        if self._kernel is not kernel:
            return
        self._kernel = None
        self._thread = None
        self._thread_name = ""
        self._watch = select.poll()

    def _idle_timeout(self, deadline: float) -> float:
        """Nothing is ready and the next timer is due at ``deadline``: how many real
        seconds the kernel's poll() may wait (-1: until a file, thread or signal wakes it).
        In autojump mode, first wait up to the threshold for the epoll file to become
        readable, and if it does not, jump to ``deadline``; never to ``math.inf`` (no limit)."""
        now = self.current_time()
        if deadline <= now:
            return 0.0
        wait = min((deadline - now) / self._rate, _LONGEST_WAIT) if self._rate else -1.0
        threshold = self._autojump_threshold
        if threshold == math.inf or 0.0 <= wait <= threshold or deadline == math.inf:
            return wait  # never jump to math.inf: a timer there means "no limit"
        if not self._watch.poll(threshold * 1000.0):  # idle for the whole threshold
            self._set(deadline)
        return 0.0
