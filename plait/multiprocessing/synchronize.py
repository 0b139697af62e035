"""Drop-in face of ``multiprocessing.synchronize``; the code lives in
``plait.ipc.synchronize`` (futex words in shared memory)."""

from plait.ipc.synchronize import Barrier as Barrier
from plait.ipc.synchronize import (
    BoundedSemaphore,
    Condition,
    Event,
    Lock,
    RLock,
    Semaphore,
)
from plait.ipc.synchronize import SemLock as SemLock

__all__ = ["Lock", "RLock", "Semaphore", "BoundedSemaphore", "Condition", "Event"]
