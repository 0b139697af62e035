"""``run_in_process``: CPU-bound calls, run by a plait process pool the kernel owns.

Each kernel owns at most one ``plait.pool.Pool`` (``cpu_count()`` workers), started by the
first ``run_in_process`` and terminated when ``run()`` returns, so no worker outlives the
kernel. ``await run_in_process(fn, *args)`` submits ``pool.apply_async`` with callbacks
and suspends the task (``SUSPEND``); the pool's scheduler thread runs the callback,
which hands the outcome back with ``Kernel.wake_threadsafe``: the kernel never blocks
while a worker computes. The function and its arguments travel as the pool sends them
(pickle, cloudpickle for lambdas and closures); an exception raised in the worker is
re-raised in the task with the worker's traceback as its ``__cause__``.

Cancellation (``Task.cancel``, an expired ``timeout_after``) calls
``AsyncResult.cancel``: a call no worker took yet is dropped, and a worker already
running it is killed with SIGKILL (``finally`` blocks in the worker do not run) and
replaced by the pool. If the answer is already on its way back, the cancellation waits
for the task's next blocking point and the answer is delivered first.

The workers start by ``forkserver``, whatever the program's start method: a worker forked
from the kernel's process would inherit every fd open there at that moment, the kernel's
epoll and wake-up pipe, the signal wake-up fd (a signal sent to a worker would reach the
parent's ``SignalQueue``) and any socket, which then stays open in the worker after the
parent closes it, so its peer never sees EOF. A forkserver child inherits only what it
is sent; functions still travel as above. As with ``spawn``, the server runs the main
script again as ``__mp_main__``, so a script that calls ``run_in_process`` needs the
``if __name__ == "__main__":`` guard. Starting the pool (and the fork server, once per
process) holds the kernel during the first call; later calls do not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import traps

if TYPE_CHECKING:
    from plait.pool import Pool

__all__ = ["run_in_process"]


def _pool(k: Any) -> Pool:
    """The kernel's process pool, started on first use and terminated when it closes."""
    pool = getattr(k, "process_pool", None)
    if pool is None:
        from plait.pool import Pool  # on first use: plait.coro alone does not load the pool
        from plait.process import get_context

        # workers that inherit none of the kernel's fds: see the essay above
        pool = k.process_pool = Pool(context=get_context("forkserver"))
        k.closers.append(pool.terminate)
    return pool


async def run_in_process(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn(*args, **kwargs)`` in a worker process; return its result or raise its error.

    Blocks the task (never the kernel) until the worker answers. A blocking point: on
    cancellation the call is dropped, or the worker running it is killed (and replaced).
    Raises what ``fn`` raised (its remote traceback as ``__cause__``),
    ``plait.pool.WorkerLostError`` if the worker died, ``TypeError`` if ``fn`` is not
    callable, and a pickling error if ``fn`` or an argument cannot be sent.

    >>> from plait.coro import run
    >>> async def main():
    ...     return await run_in_process(sum, range(10**6))
    >>> run(main)
    499999500000
    """
    k = traps.kernel()
    task = k.current
    token = object()
    wake = k.wake_threadsafe
    result = _pool(k).apply_async(
        fn,
        args,
        kwargs,
        callback=lambda value: wake(task, token, value, None),
        error_callback=lambda exc: wake(task, token, None, exc),
    )
    return await traps.suspend("PROCESS_WAIT", token, result.cancel)
