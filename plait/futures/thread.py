"""Drop-in face of ``concurrent.futures.thread``; the code lives in ``plait.pool.executor``.

``BrokenThreadPool`` is the standard class: what the tasks of a worker thread whose
initializer raised fail with.
"""

from __future__ import annotations

from concurrent.futures.thread import BrokenThreadPool

from plait.pool.executor import ThreadPoolExecutor

__all__ = ["BrokenThreadPool", "ThreadPoolExecutor"]
