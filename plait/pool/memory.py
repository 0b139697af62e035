"""Memory limits of pool workers: ``max_memory_per_child=`` in bytes or as ``"2GB"``.

The figure is the kernel's own: a process's resident set (``/proc/<pid>/statm``, pages
in RAM, shared ones included), read by the worker after each task and, while a task
runs, by the scheduler at most every ``CHECK_SECONDS``. A worker over its limit after a
task answers, says so (``worker.RETIRING``) and exits; the scheduler starts another and
sends the chunks it held elsewhere. A worker ``FAR_OVER`` times past its limit in the
middle of a task is killed by the scheduler, and that task fails with a
``WorkerLostError`` naming the figure and the limit. A limit below the resident set of
a fresh worker (which reports it once, ``worker.MEMORY_REPORT``) would replace every
worker after every task: the pool refuses it with ``ValueError``.
"""

from __future__ import annotations

import os
import re

__all__ = ["CHECK_SECONDS", "FAR_OVER", "format_bytes", "parse_memory", "resident_bytes"]

CHECK_SECONDS = 0.5  # how often the scheduler reads the resident set of busy workers
FAR_OVER = 2  # a worker this many times over its limit is killed mid-task

_PAGE = os.sysconf("SC_PAGE_SIZE")
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_FIGURE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", re.IGNORECASE)


def parse_memory(value: int | str) -> int:
    """Bytes from ``value``: an int, or a string such as ``"512MB"``, ``"2GB"``, ``"1.5G"``,
    ``"100KiB"`` (K, M, G, T are powers of 1024). Raises ``ValueError``/``TypeError``
    naming the value."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"max_memory_per_child must be positive, not {value}")
        return value
    if not isinstance(value, str):
        raise TypeError(
            f"max_memory_per_child takes bytes or a string such as '2GB', not {value!r}"
        )
    match = _FIGURE.fullmatch(value)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"max_memory_per_child: cannot read {value!r} as a size such as '2GB'")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def format_bytes(n: int) -> str:
    """``n`` bytes for a message: ``"1.5 GiB"``."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        size = _UNITS[unit[0]]
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def resident_bytes(pid: int | str = "self") -> int | None:
    """The resident set of process ``pid`` in bytes, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None
