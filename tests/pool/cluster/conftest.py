"""Fixtures of the cluster tests: one real local cluster per module, and the pools on it.

A Dask ``LocalCluster`` (2 single-threaded worker processes under nannies) or a local
Ray (2 CPUs) is started once per test module and stopped after it; each test makes its
pools on it by address, as a user with a running cluster does. The engines are
optional: without them these tests are skipped.

``cluster_pool``/``cluster_executor`` are ``Pool(backend=..., address=...)`` and
``ProcessPoolExecutor(...)`` with the same keywords: the tests name the backend once.
"""

from __future__ import annotations

from plait.pool import Pool
from plait.pool.executor import ProcessPoolExecutor


def cluster_pool(processes=None, **kwargs) -> Pool:
    """``Pool(processes, backend=..., address=..., ...)``."""
    return Pool(processes, **kwargs)


def cluster_executor(max_workers=None, *, task_timeout=None, **kwargs) -> ProcessPoolExecutor:
    """``ProcessPoolExecutor(max_workers, backend=..., address=...)``."""
    return ProcessPoolExecutor(max_workers, task_timeout=task_timeout, **kwargs)
