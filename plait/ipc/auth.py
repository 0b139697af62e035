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

``deliver_challenge`` and ``answer_challenge`` are the two halves under their standard
names, for programs that authenticate a connection of their own the way
``multiprocessing.connection`` lets them: the server calls ``deliver_challenge`` then
``answer_challenge``, the client the reverse. Which role a half plays is not an argument
in the standard signatures, so it comes from the order: the first exchange on a
connection is the client proving itself, the second the server. That is the order
``Listener``/``Client`` use, so either end may be hand-made. The two halves speak
plait's handshake (sha256, nonces of ``NONCE_SIZE`` bytes), not the standard library's
(md5, unlabelled): they authenticate plait connections to plait peers.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import time
from typing import Any

from plait._core.errors import AuthenticationError
from plait.ipc.connection import Connection

__all__ = [
    "CHALLENGE",
    "FAILURE",
    "MESSAGE_LIMIT",
    "WELCOME",
    "answer_challenge",
    "client_handshake",
    "deliver_challenge",
    "serve_handshake",
]

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
    except Exception as exc:  # what a peer's garbage makes the framing raise, among others
        raise AuthenticationError(f"{peer}: handshake failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if not conn.closed:
            channel.set_deadline(None)


def deliver_challenge(connection: Any, authkey: bytes, *, timeout: float | None = None) -> None:
    """Challenge the peer of ``connection`` to prove it holds ``authkey``.

    ``connection`` is a plait ``Connection``, or anything with ``send_bytes`` and
    ``recv_bytes``. Blocks until the peer answers, or up to ``timeout`` seconds (a
    ``Connection`` only; then ``AuthenticationError``). Raises ``AuthenticationError``
    when the answer is wrong (the peer is told so first), ``TypeError`` when ``authkey``
    is not bytes.
    """
    _one_side(_deliver, connection, authkey, timeout)


def answer_challenge(connection: Any, authkey: bytes, *, timeout: float | None = None) -> None:
    """Answer the challenge the peer of ``connection`` sends, proving we hold ``authkey``.

    Blocks and raises like ``deliver_challenge``; also ``AuthenticationError`` when the
    peer sends no challenge or rejects the answer.
    """
    _one_side(_answer, connection, authkey, timeout)


def _one_side(step: Any, connection: Any, authkey: bytes, timeout: float | None) -> None:
    """Run one side of the handshake (``_deliver`` or ``_answer``) on ``connection``,
    under ``timeout`` when one is given."""
    _check_authkey(authkey)
    role = _next_role(connection)
    if timeout is None:
        step(connection, authkey, role)
        return
    with _handshake(connection, timeout, "peer"):
        step(connection, authkey, role)


def _check_authkey(authkey: Any) -> None:
    if not isinstance(authkey, bytes):
        raise TypeError(f"Authkey must be bytes, not {type(authkey).__name__}")


def _next_role(connection: Any) -> bytes:
    """The label of the next exchange on ``connection``: the client's proof comes first."""
    step = getattr(connection, "_plait_auth_steps", 0)
    connection._plait_auth_steps = step + 1
    return b"client:" if step % 2 == 0 else b"server:"


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
