"""Executors with the ``concurrent.futures`` interface; the code lives in ``plait.pool``.

``ProcessPoolExecutor`` and ``ThreadPoolExecutor`` return ``concurrent.futures.Future``
objects (``as_completed``, ``wait`` and ``asyncio.wrap_future`` work on them); a dead
worker fails only its own future with ``WorkerLostError``, and ``task_timeout=`` stops a
task that overruns. See ``plait.pool.executor``.
"""

from plait.pool.errors import TimeoutError, WorkerLostError
from plait.pool.executor import ProcessPoolExecutor, ThreadPoolExecutor

__all__ = ["ProcessPoolExecutor", "ThreadPoolExecutor", "TimeoutError", "WorkerLostError"]
