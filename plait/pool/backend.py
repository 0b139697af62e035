"""The backend seam: how the scheduler starts, talks to and stops one worker.

The scheduler (``scheduler``) knows a worker only through this small interface, so a
cluster backend (a later issue: Dask, Ray) can stand where local processes stand:

- ``Backend.start_worker()`` returns a started ``WorkerHandle``;
- ``handle.conn`` is a ``Connection``-like channel: ``send(obj)``, ``recv()``,
  ``poll(timeout)``, ``fileno()`` (it sits in the scheduler's ``wait``);
- ``handle.sentinel`` is an fd that becomes readable when the worker is gone;
- ``handle.pid``, ``handle.kill()``, ``handle.signal(signum)``, ``handle.reap(timeout)``
  (the exit code, or None while it still runs), ``handle.close()``;
- ``handle.started()``: the id of the chunk the worker started last (its progress
  word, see ``worker``), 0 before the first.

``ProcessBackend`` is the local one: a daemon ``Process`` per worker, started with the
pool's context, and a ``Pipe`` of its own (messages in ``worker``). As in the standard
pool, the workers are made by ``make_process(ctx, target=..., args=..., daemon=True)``,
the pool class's ``Process`` hook, which calls ``ctx.Process``: a program's override of
either is honoured (the known recipes for pools whose workers may start pools of their
own give the pool a ``Process`` that is never daemonic). A plait context is used as it
is; any other (the standard library's) names a start method, and plait's context of
that method starts the workers: their pipe end travels as a plait fd. On ``fork``, a
fork helper made with the backend starts the workers forked while the scheduler thread
runs (``plait.process.forkserver.ForkHelper``): no worker is forked from a process
that runs threads. ``close()`` ends it, after the workers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from plait.ipc import Pipe
from plait.ipc.sharedctypes import RawValue
from plait.pool import worker
from plait.process import get_context
from plait.process.context import BaseContext
from plait.process.forkserver import ForkHelper

__all__ = ["ProcessBackend", "WorkerHandle"]


class WorkerHandle:
    """One local worker process and the scheduler's end of its pipe."""

    def __init__(self, process: Any, conn: Any, progress: Any) -> None:
        self.process = process
        self.conn = conn
        self.pid: int = process.pid
        self.sentinel: int = process.sentinel
        self._progress = progress

    def started(self) -> int:
        """The id of the chunk the worker started last, negated once it finished running
        it (0: none yet; not after ``close``)."""
        return self._progress.value

    def kill(self) -> None:
        """SIGKILL the worker (nothing if it already ended); does not wait."""
        self.process.kill()

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the worker unless it is known to have ended, through its
        process handle (a pidfd where the worker is our child, never a recycled pid)."""
        popen = self.process._popen
        if popen is not None:
            popen.send_signal(signum)

    def reap(self, timeout: float | None = 0) -> int | None:
        """Wait up to ``timeout`` seconds for the worker to end; its exit code or None."""
        self.process.join(timeout)
        return self.process.exitcode

    def close(self) -> None:
        """Close the pipe and release the process (kills and reaps it if still running)."""
        self.conn.close()
        self._progress = None  # its memfd closes with it
        if self.reap(0) is None:
            self.process.kill()
            self.process.join(5)
        self.process.close()


def _context_process(ctx: Any, *args: Any, **kwds: Any) -> Any:
    return ctx.Process(*args, **kwds)


class ProcessBackend:
    """Start local worker processes with ``context`` (a plait context or None: default)."""

    def __init__(
        self,
        context: Any,
        initializer,
        initargs,
        maxtasks: int | None,
        make_process: Callable[..., Any] | None = None,
        cpu_share: int = 1,
        env: dict | None = None,
        thread_cap: int | None = None,
        memory_limit: int | None = None,
    ) -> None:
        self._make_process = make_process or _context_process
        if isinstance(context, BaseContext):
            self._context = context
        else:
            method = None if context is None else context.get_start_method()
            self._context = get_context(method)
        self._args = (
            initializer,
            tuple(initargs),
            maxtasks,
            cpu_share,
            env,
            thread_cap,
            memory_limit,
        )
        self._helper = ForkHelper() if self._context.get_start_method() == "fork" else None

    def start_worker(self) -> WorkerHandle:
        """Start one worker; returns once it runs. Raises ``OSError`` when out of resources."""
        ours, theirs = Pipe()
        try:
            progress = RawValue("q", 0)
            process = self._make_process(
                self._context,
                target=worker.worker_main,
                args=(theirs, progress, *self._args),
                daemon=True,
            )
            process.name = process.name.replace("Process", "PoolWorker", 1)
            if self._helper is None:
                process.start()
            else:
                self._helper.start_process(process)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return WorkerHandle(process, ours, progress)

    def close(self) -> None:
        """End the fork helper, if any; call it once the workers are reaped."""
        if self._helper is not None:
            self._helper.close()
