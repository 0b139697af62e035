"""Drop-in face of ``multiprocessing.synchronize``; the code lives in
``plait.ipc.synchronize`` (futex words in shared memory)."""

from plait.ipc.synchronize import RECURSIVE_MUTEX as RECURSIVE_MUTEX
from plait.ipc.synchronize import SEM_VALUE_MAX as SEM_VALUE_MAX
from plait.ipc.synchronize import SEMAPHORE as SEMAPHORE
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
