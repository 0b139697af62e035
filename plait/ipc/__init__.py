"""Channels between processes: connections, ``wait``, listeners and clients.

``Pipe``, ``Connection`` and ``wait`` live in ``connection``; ``Listener`` and ``Client``
(with the HMAC handshake of ``auth``) in ``listener``. The exception classes are those of
``plait._core``, so every layer raises the same ones.
"""

from plait._core.errors import AuthenticationError, BufferTooShort, ProcessError
from plait._core.framing import MessageTooLarge
from plait.ipc.connection import Connection, Pipe, wait
from plait.ipc.listener import Client, Listener

__all__ = [
    "AuthenticationError",
    "BufferTooShort",
    "Client",
    "Connection",
    "Listener",
    "MessageTooLarge",
    "Pipe",
    "ProcessError",
    "wait",
]
