"""Drop-in face of ``concurrent.futures.process``; the code lives in ``plait.pool.executor``.

``BrokenProcessPool`` is the standard class; plait's executor raises it only as the base
of ``WorkerLostError`` (one worker died: only its task failed, the executor goes on).
``EXTRA_QUEUED_CALLS`` sizes the standard executor's call queue, which plait's executor
has not: reading it raises an ``AttributeError`` that says so.
"""

from __future__ import annotations

from concurrent.futures.process import BrokenProcessPool

from plait.pool.errors import WorkerLostError
from plait.pool.executor import ProcessPoolExecutor

__all__ = ["BrokenProcessPool", "ProcessPoolExecutor", "WorkerLostError"]

_NOT_HONOURED = {
    "EXTRA_QUEUED_CALLS": (
        "concurrent.futures.process.EXTRA_QUEUED_CALLS sizes the standard executor's call "
        "queue; plait's executor has none: its scheduler sends each worker a few chunks "
        "ahead (plait.pool.scheduler.PREFETCH)"
    ),
}


def __getattr__(name: str) -> object:
    if name in _NOT_HONOURED:
        raise AttributeError(_NOT_HONOURED[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
