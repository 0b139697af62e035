"""Drop-in face of ``multiprocessing.connection``; the code lives in ``plait.ipc``."""

from plait.ipc import (
    AuthenticationError,
    BufferTooShort,
    Client,
    Connection,
    Listener,
    Pipe,
    wait,
)

__all__ = [
    "AuthenticationError",
    "BufferTooShort",
    "Client",
    "Connection",
    "Listener",
    "Pipe",
    "wait",
]
