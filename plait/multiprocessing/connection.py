"""Drop-in face of ``multiprocessing.connection``; the code lives in ``plait.ipc``.

Names of the standard module with no meaning here are absent: ``BUFSIZE`` (plait reads
whole messages, there is no read buffer to size) and the Windows-only pipe classes. The
handshake's message prefixes are public before Python 3.12 and private from it on
(``_CHALLENGE``), as in the standard module of the running Python.
"""

import sys

from plait._core.errors import AuthenticationError, BufferTooShort
from plait.ipc.auth import CHALLENGE as _CHALLENGE
from plait.ipc.auth import FAILURE as _FAILURE
from plait.ipc.auth import NONCE_SIZE as MESSAGE_LENGTH
from plait.ipc.auth import WELCOME as _WELCOME
from plait.ipc.auth import answer_challenge, deliver_challenge
from plait.ipc.connection import (
    Connection,
    ConnectionWrapper,
    Pipe,
    rebuild_connection,
    reduce_connection,
    wait,
)
from plait.ipc.listener import HANDSHAKE_TIMEOUT as CONNECTION_TIMEOUT
from plait.ipc.listener import (
    Client,
    Listener,
    SocketClient,
    SocketListener,
    XmlClient,
    XmlListener,
    address_type,
    arbitrary_address,
    default_family,
    families,
)

__all__ = [
    "CONNECTION_TIMEOUT",
    "MESSAGE_LENGTH",
    "AuthenticationError",
    "BufferTooShort",
    "Client",
    "Connection",
    "ConnectionWrapper",
    "Listener",
    "Pipe",
    "SocketClient",
    "SocketListener",
    "XmlClient",
    "XmlListener",
    "address_type",
    "answer_challenge",
    "arbitrary_address",
    "default_family",
    "deliver_challenge",
    "families",
    "rebuild_connection",
    "reduce_connection",
    "wait",
]

if sys.version_info < (3, 12):
    CHALLENGE, FAILURE, WELCOME = _CHALLENGE, _FAILURE, _WELCOME
    __all__ += ["CHALLENGE", "FAILURE", "WELCOME"]
