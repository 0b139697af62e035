"""``cpu_count``: how many CPUs this process may actually use.

``os.cpu_count()`` (and ``multiprocessing.cpu_count()``, which returns it) counts the
CPUs of the machine. In a container or under ``taskset`` a process may run on fewer:
the affinity mask restricts *which* CPUs it may run on, and a cgroup CPU quota
restricts *how much* CPU time it gets per period (``docker --cpus=2`` on a 64-core host
is a quota of 2). A pool sized by ``os.cpu_count()`` there starts 64 workers that
fight over 2 CPUs. ``cpu_count`` returns the smallest of the three limits.

Quotas are read from the cgroup of this process and of every ancestor cgroup (a limit
set on a parent cgroup applies to its children): ``cpu.max`` ("<quota> <period>" or
"max <period>") under cgroup v2, ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota
-1: none) under v1. A quota of 1.5 CPUs counts as 2: the work of 2 workers fits in it.

The user's word comes first: ``python -X cpu_count=N`` or ``PYTHON_CPU_COUNT=N`` (the
environment variable unless ``-E``) sets the count, as they set ``os.cpu_count()`` and
``os.process_cpu_count()`` from Python 3.13 on; plait honours them on every version.
``process_cpu_count`` is the same count under the name 3.13 gave it.
"""

from __future__ import annotations

import math
import os
import sys

__all__ = ["cpu_count", "process_cpu_count"]


def cpu_count() -> int:
    """The number of CPUs this process can use: affinity mask and cgroup quota honoured.

    Unlike ``os.cpu_count()``, which counts every CPU of the machine, this is at most
    ``len(os.sched_getaffinity(0))`` and at most the CPU quota of the process's cgroup
    (v1 or v2, the tightest of its ancestors too), rounded up; never less than 1.
    ``-X cpu_count=N`` or ``PYTHON_CPU_COUNT=N`` overrides it (see above).
    Raises ``NotImplementedError`` if the count cannot be determined, like
    ``multiprocessing.cpu_count``.
    """
    override = cpu_count_override()
    if override is not None:
        return override
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count()
    if not count:
        raise NotImplementedError("cannot determine number of cpus")
    quota = cgroup_cpu_quota()
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return count


def process_cpu_count() -> int:
    """``cpu_count()``, under the name of Python 3.13's ``os.process_cpu_count``."""
    return cpu_count()


def cpu_count_override() -> int | None:
    """The count set by ``-X cpu_count=N``, else by ``PYTHON_CPU_COUNT=N``; ``None`` if
    neither sets one (absent, ``default``, or not a positive integer)."""
    value = sys._xoptions.get("cpu_count")
    if value is None and not sys.flags.ignore_environment:
        value = os.environ.get("PYTHON_CPU_COUNT")
    if not isinstance(value, str) or not value.isdigit() or int(value) < 1:
        return None
    return int(value)


def cgroup_cpu_quota(
    proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup"
) -> float | None:
    """The tightest CPU quota (in CPUs, a float) of this process's cgroups, or ``None``.

    ``proc_cgroup`` and ``root`` name the files to read; they exist for tests.
    """
    try:
        with open(proc_cgroup) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            limits += _v2_limits(root, path)
        elif "cpu" in controllers.split(","):
            limits += _v1_limits(root, controllers, path)
    return min(limits, default=None)


def _ancestors(base: str, path: str) -> list[str]:
    """``base/path`` and every directory above it, up to and including ``base``."""
    dirs = [base]
    parts = [p for p in path.split("/") if p]
    for i in range(len(parts)):
        dirs.append(os.path.join(base, *parts[: i + 1]))
    return dirs


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _v2_limits(root: str, path: str) -> list[float]:
    base = os.path.join(root, "unified") if os.path.isdir(os.path.join(root, "unified")) else root
    limits = []
    for d in _ancestors(base, path):
        text = _read(os.path.join(d, "cpu.max"))
        if text:
            quota, _, period = text.partition(" ")
            if quota != "max" and period and int(period) > 0:
                limits.append(int(quota) / int(period))
    return limits


def _v1_limits(root: str, controllers: str, path: str) -> list[float]:
    for name in (controllers, "cpu,cpuacct", "cpu"):
        base = os.path.join(root, name)
        if os.path.isdir(base):
            break
    else:
        return []
    limits = []
    for d in _ancestors(base, path):
        quota = _read(os.path.join(d, "cpu.cfs_quota_us"))
        period = _read(os.path.join(d, "cpu.cfs_period_us"))
        if quota and period and int(quota) > 0 and int(period) > 0:
            limits.append(int(quota) / int(period))
    return limits
