"""Fixtures of the cluster tests: one real local cluster per module, and the pools on it.

A Dask ``LocalCluster`` (2 single-threaded worker processes under nannies) or a local
Ray (2 CPUs) is started once per test module and stopped after it; each test makes its
pools on it by address, as a user with a running cluster does. The engines are
optional: without them these tests are skipped.

``cluster_pool``/``cluster_executor`` build the backend-driven pool through
``Pool(backend=..., address=...)`` when ``Pool`` has that hook, and through
``plait.pool.backends.make_engine`` otherwise (the hook is pending in the pool module).
"""

from __future__ import annotations

import inspect
import weakref

from plait.pool import Pool
from plait.pool import pool as _pool_module
from plait.pool.backends import make_engine
from plait.pool.executor import ProcessPoolExecutor

_HOOKED = "backend" in inspect.signature(Pool).parameters


class _BackendPool(Pool):
    """``Pool`` driven by a cluster engine, until ``Pool(backend=...)`` exists."""

    def __init__(
        self,
        processes=None,
        initializer=None,
        initargs=(),
        maxtasksperchild=None,
        context=None,
        *,
        backend,
        address=None,
        backend_options=None,
    ) -> None:
        self._engine = make_engine(
            backend,
            address,
            processes,
            initializer,
            tuple(initargs),
            maxtasksperchild,
            context,
            backend_options,
        )
        self._processes = self._engine.workers_wanted
        _pool_module._register(self._engine)
        weakref.finalize(self, self._engine.terminate)


def cluster_pool(processes=None, **kwargs) -> Pool:
    """``Pool(processes, backend=..., address=..., ...)``."""
    cls = Pool if _HOOKED else _BackendPool
    return cls(processes, **kwargs)


def cluster_executor(max_workers=None, *, task_timeout=None, **kwargs) -> ProcessPoolExecutor:
    """``ProcessPoolExecutor(max_workers, backend=..., address=...)``."""
    if "backend" in inspect.signature(ProcessPoolExecutor).parameters:
        return ProcessPoolExecutor(max_workers, task_timeout=task_timeout, **kwargs)
    executor = ProcessPoolExecutor.__new__(ProcessPoolExecutor)
    executor._shutdown = False
    executor._task_timeout = task_timeout
    executor._pool = cluster_pool(max_workers, **kwargs)
    return executor
