"""Drop-in face of ``concurrent.futures``: ``import plait.futures as futures``.

The executors are plait's (``plait.pool.executor``): ``ProcessPoolExecutor`` and
``ThreadPoolExecutor`` are instances of the standard classes of the same names for
``isinstance`` checks (``asyncio``'s ``set_default_executor``), with every method plait's
own; a dead worker fails only its own future with ``WorkerLostError`` (a
``BrokenProcessPool``) and ``task_timeout=`` stops a task that overruns.

Everything else is the standard module's own object, because plait's executors return
standard ``Future`` objects: ``Future``, ``wait``, ``as_completed`` and the
``*_COMPLETED`` constants work on them as on any future (and ``asyncio.wrap_future``
too), and the exceptions are the classes programs already catch (``CancelledError``,
``TimeoutError``, ``BrokenExecutor``, ``InvalidStateError``). ``Executor`` is the
standard abstract base, which plait's executors subclass. ``plait.futures.process`` and
``plait.futures.thread`` are the faces of the standard submodules.
"""

from __future__ import annotations

from concurrent.futures import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    BrokenExecutor,
    CancelledError,
    Executor,
    Future,
    InvalidStateError,
    TimeoutError,
    as_completed,
    wait,
)

from plait.futures import process, thread
from plait.pool.errors import SoftTimeoutError, WorkerLostError
from plait.pool.executor import ProcessPoolExecutor, ThreadPoolExecutor, get_reusable_executor

__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "BrokenExecutor",
    "CancelledError",
    "Executor",
    "Future",
    "InvalidStateError",
    "ProcessPoolExecutor",
    "SoftTimeoutError",
    "ThreadPoolExecutor",
    "TimeoutError",
    "WorkerLostError",
    "as_completed",
    "get_reusable_executor",
    "process",
    "thread",
    "wait",
]
