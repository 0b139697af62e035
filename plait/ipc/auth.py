"""The authentication handshake of ``Listener`` and ``Client``: HMAC, both ways.

Theory of operation
-------------------
Both ends hold a shared secret, the ``authkey``. Each end proves it holds the key to the
other by answering a challenge; neither end unpickles a byte before both proofs passed,
because unpickling runs code chosen by whoever wrote the bytes.

    server -> client   CHALLENGE + 32 random bytes (the nonce)
    client -> server   HMAC-SHA256(authkey, b"client:" + nonce)
    server -> client   WELCOME, or FAILURE (and the server raises)
    client -> server   CHALLENGE + nonce'
    server -> client   HMAC-SHA256(authkey, b"server:" + nonce')
    client -> server   WELCOME, or FAILURE (and the client raises)

The nonces come from ``os.urandom``, so an eavesdropper cannot replay an old answer. The
role is part of the MAC's input, so a peer cannot get our answer computed for us by
reflecting our own challenge back (or by relaying it to another server acting as a
client). Digests are compared with ``hmac.compare_digest`` (constant time).

Every handshake message is raw bytes (``send_bytes``/``recv_bytes``), at most
``MESSAGE_LIMIT`` bytes, so a garbage or hostile peer can make us allocate nothing
sizeable, and the whole exchange runs under one deadline so that a silent or dribbling
peer cannot hold us. Any failure (wrong key, garbage, timeout, disconnect) raises
``AuthenticationError`` naming the cause; the caller closes the connection.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import time

from plait._core.errors import AuthenticationError
from plait.ipc.connection import Connection

__all__ = ["MESSAGE_LIMIT", "serve_handshake", "client_handshake"]

CHALLENGE = b"#PLAIT-CHALLENGE#sha256:"
WELCOME = b"#PLAIT-WELCOME#"
FAILURE = b"#PLAIT-FAILURE#"
NONCE_SIZE = 32
DIGEST = "sha256"
MESSAGE_LIMIT = 256


def serve_handshake(conn: Connection, authkey: bytes, timeout: float, peer: str) -> None:
    """The server's side: challenge the client, then answer its challenge.

    Blocks up to ``timeout`` seconds. Raises ``AuthenticationError`` naming ``peer``.
    """
    with _handshake(conn, timeout, peer):
        _deliver(conn, authkey, b"client:")
        _answer(conn, authkey, b"server:")


def client_handshake(conn: Connection, authkey: bytes, timeout: float, peer: str) -> None:
    """The client's side: answer the server's challenge, then challenge it.

    Blocks up to ``timeout`` seconds. Raises ``AuthenticationError`` naming ``peer``.
    """
    with _handshake(conn, timeout, peer):
        _answer(conn, authkey, b"client:")
        _deliver(conn, authkey, b"server:")


@contextlib.contextmanager
def _handshake(conn: Connection, timeout: float, peer: str):
    """Run the block under one deadline; turn every failure into ``AuthenticationError``."""
    channel = conn._channel
    try:
        channel.set_deadline(time.monotonic() + timeout)
        yield
    except AuthenticationError as exc:
        raise AuthenticationError(f"{peer}: {exc}") from None
    except TimeoutError as exc:
        raise AuthenticationError(f"{peer}: no handshake within {timeout:g} s") from exc
    except (OSError, EOFError, ValueError) as exc:
        raise AuthenticationError(f"{peer}: handshake failed: {type(exc).__name__}: {exc}") from exc
    channel.set_deadline(None)


def _deliver(conn: Connection, authkey: bytes, role: bytes) -> None:
    nonce = os.urandom(NONCE_SIZE)
    conn.send_bytes(CHALLENGE + nonce)
    answer = conn.recv_bytes(MESSAGE_LIMIT)
    expected = hmac.new(authkey, role + nonce, DIGEST).digest()
    if not hmac.compare_digest(answer, expected):
        conn.send_bytes(FAILURE)
        raise AuthenticationError("the peer's digest was wrong: it does not hold the key")
    conn.send_bytes(WELCOME)


def _answer(conn: Connection, authkey: bytes, role: bytes) -> None:
    message = conn.recv_bytes(MESSAGE_LIMIT)
    if not message.startswith(CHALLENGE) or len(message) != len(CHALLENGE) + NONCE_SIZE:
        raise AuthenticationError(f"expected a challenge, got {message[:40]!r}")
    nonce = message[len(CHALLENGE) :]
    conn.send_bytes(hmac.new(authkey, role + nonce, DIGEST).digest())
    response = conn.recv_bytes(MESSAGE_LIMIT)
    if response != WELCOME:
        raise AuthenticationError("the peer rejected our digest: the keys differ")
