"""Channels between processes and what they share: connections, listeners, queues, locks.

``Pipe``, ``Connection`` and ``wait`` live in ``connection``; ``Listener`` and ``Client``
(with the HMAC handshake of ``auth``) in ``listener``; ``Lock``, ``RLock``, ``Semaphore``,
``BoundedSemaphore``, ``Event``, ``Condition``, ``Barrier`` (futex words in shared
memory) in ``synchronize``; ``Queue``, ``JoinableQueue``, ``SimpleQueue`` (a shared-memory
ring) in ``queues``; ``Value``, ``Array``, ``RawValue``, ``RawArray`` in ``sharedctypes``;
``SharedMemory`` and ``ShareableList`` in ``shared_memory``; the standard shared heap
(``Arena``, ``Heap``, ``BufferWrapper``) in ``heap``; ``ForkingPickler`` and fd passing
in ``reduction``. Every process context offers the constructors too (``ctx.Queue()``,
``ctx.Lock()``): ``plait.process.context`` names their modules in its table. The
exception classes are those of
``plait._core``, so every layer raises the same ones.

``listener`` is imported on first use of ``Listener`` or ``Client``: a child that only
rebuilds a ``Connection`` from its arguments does not pay for ``hmac``, ``tempfile`` and
``shutil``.
"""

from plait._core.errors import AuthenticationError, BufferTooShort, ProcessError
from plait._core.framing import MessageTooLarge
from plait.ipc.connection import Connection, Pipe, wait
from plait.ipc.queues import JoinableQueue, Queue, SimpleQueue
from plait.ipc.sharedctypes import Array, RawArray, RawValue, Value
from plait.ipc.synchronize import (
    Barrier,
    BoundedSemaphore,
    Condition,
    Event,
    Lock,
    OwnerDiedError,
    RLock,
    Semaphore,
)

__all__ = [
    "Array",
    "AuthenticationError",
    "Barrier",
    "BoundedSemaphore",
    "BufferTooShort",
    "Client",
    "Condition",
    "Connection",
    "Event",
    "JoinableQueue",
    "Listener",
    "Lock",
    "MessageTooLarge",
    "OwnerDiedError",
    "Pipe",
    "ProcessError",
    "Queue",
    "RLock",
    "RawArray",
    "RawValue",
    "Semaphore",
    "SimpleQueue",
    "Value",
    "wait",
]

_LAZY = ("Client", "Listener")


def __getattr__(name: str):
    if name in _LAZY:
        from plait.ipc import listener  # noqa: PLC0415 - on first use, see the docstring

        return getattr(listener, name)
    raise AttributeError(f"module 'plait.ipc' has no attribute {name!r}")
