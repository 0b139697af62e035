"""``progress=True``: a tqdm bar over a map-style call, when tqdm is installed.

The bar is created by the calling thread and advanced by the engine as chunks complete
(tqdm is thread-safe for that). Without tqdm, ``progress=True`` does nothing: a bar is
a convenience, not a reason to fail a computation.
"""

from __future__ import annotations

import operator
from typing import Any

__all__ = ["bar", "length_hint"]


_bar_class: Any = None


def bar(total: int | None) -> Any:
    """A tqdm bar of ``total`` items, or None when tqdm is not installed.

    The bar starts no monitor thread (tqdm's would outlive the pool): the engine
    advances it on every chunk, so it never stalls.
    """
    global _bar_class
    if _bar_class is None:
        try:
            from tqdm.auto import tqdm  # noqa: PLC0415 - optional, only when asked for
        except ImportError:
            return None
        _bar_class = type("Bar", (tqdm,), {"monitor_interval": 0})
    return _bar_class(total=total, unit="task")


def length_hint(iterable: Any) -> int | None:
    """The length of ``iterable`` if it tells, without reading it; else None."""
    hint = operator.length_hint(iterable, -1)
    return None if hint < 0 else hint
