"""Drop-in face of ``multiprocessing.pool``; the code lives in ``plait.pool``."""

from plait.pool import (
    ApplyResult,
    AsyncResult,
    IMapIterator,
    IMapUnorderedIterator,
    MapResult,
    MaybeEncodingError,
    Pool,
    RemoteTraceback,
    ThreadPool,
)

__all__ = [
    "ApplyResult",
    "AsyncResult",
    "IMapIterator",
    "IMapUnorderedIterator",
    "MapResult",
    "MaybeEncodingError",
    "Pool",
    "RemoteTraceback",
    "ThreadPool",
]
