"""Drop-in face of ``concurrent.futures.process``; the code lives in ``plait.pool.executor``.

``BrokenProcessPool`` is the standard class; plait's executor raises it only as the base
of ``WorkerLostError`` (one worker died: only its task failed, the executor goes on).
"""

from __future__ import annotations

from concurrent.futures.process import BrokenProcessPool

from plait.pool.errors import WorkerLostError
from plait.pool.executor import ProcessPoolExecutor

__all__ = ["BrokenProcessPool", "ProcessPoolExecutor", "WorkerLostError"]
