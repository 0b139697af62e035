"""Channels between processes: connections, ``wait``, listeners and clients.

``Pipe``, ``Connection`` and ``wait`` live in ``connection``; ``Listener`` and ``Client``
(with the HMAC handshake of ``auth``) in ``listener``. The exception classes are those of
``plait._core``, so every layer raises the same ones.

``listener`` is imported on first use of ``Listener`` or ``Client``: a child that only
rebuilds a ``Connection`` from its arguments does not pay for ``hmac``, ``tempfile`` and
``shutil``.
"""

from plait._core.errors import AuthenticationError, BufferTooShort, ProcessError
from plait._core.framing import MessageTooLarge
from plait.ipc.connection import Connection, Pipe, wait

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

_LAZY = ("Client", "Listener")


def __getattr__(name: str):
    if name in _LAZY:
        from plait.ipc import listener  # noqa: PLC0415 - on first use, see the docstring

        return getattr(listener, name)
    raise AttributeError(f"module 'plait.ipc' has no attribute {name!r}")
