"""How the manager's messages travel: ``pickle`` or ``xmlrpclib`` (``listener_client``).

Theory of operation
-------------------
A manager is made with ``serializer='pickle'`` (the default) or ``'xmlrpclib'``, and
``listener_client`` maps each name to the ``(Listener, Client)`` pair its server and
clients use, as ``multiprocessing.managers.listener_client`` does.

- ``'pickle'``: plait's ``Listener`` and ``Client`` as they are: any picklable value,
  out-of-band buffers, proxies inside values, rings for local clients.
- ``'xmlrpclib'``: the same connections, authenticated the same way (the handshake
  runs on raw bytes before any message is decoded), but every message is an XML-RPC
  document (``xmlrpc.client.dumps(..., allow_none=True)``), as in the standard
  library. Values are what XML-RPC carries: ``None``, ``bool``, ``int``, ``float``,
  ``str``, lists (a tuple arrives as a list), dicts with ``str`` keys, and ``bytes``
  (which arrive as ``xmlrpc.client.Binary``, equal to the bytes they hold). Anything
  else raises ``TypeError`` in the sender, before a byte is sent. No rings: every
  message is a document on the socket.

The protocol's own envelopes are kept intact by ``XmlConnection``: a message arrives as
the tuple it was sent as (only its top level; user values inside keep XML-RPC's
types), a session id sent as bytes comes back as bytes, and the two replies XML-RPC
cannot carry are written in a form it can: an exception travels as its class's
qualified name, its arguments and the server's traceback text, and is raised again in
the client as that class when the client has imported it (any other: ``RemoteError``
naming it); a new proxy travels without its proxy type, which the client takes from
its manager's registry (or ``AutoProxy``). Nothing the peer sends is ever unpickled.
"""

from __future__ import annotations

import sys
import xmlrpc.client
from typing import Any

from plait.ipc.connection import ConnectionWrapper
from plait.ipc.listener import Client, Listener, xml_dumps, xml_loads
from plait.managers.protocol import ERROR, PROXY, RemoteError

__all__ = ["XmlConnection", "XmlListener", "XmlClient", "listener_client", "check_serializer"]


class XmlConnection(ConnectionWrapper):
    """A plait ``Connection`` whose ``send``/``recv`` carry XML-RPC documents (the ipc
    layer's ``ConnectionWrapper``), translating the managers' envelopes that XML-RPC
    cannot carry as they are: an error reply's exception, a proxy reply's token, the
    hello's key. Every other attribute is the wrapped connection's.
    """

    def __init__(self, conn: Any) -> None:
        super().__init__(conn, xml_dumps, xml_loads)

    def send(self, obj: Any) -> None:
        """Send one message; ``TypeError`` (nothing sent) for a value XML-RPC cannot carry."""
        if type(obj) is tuple and len(obj) == 2:
            if obj[0] == ERROR and isinstance(obj[1], tuple) and obj[1]:
                obj = (ERROR, _describe_error(*obj[1]))
            elif obj[0] == PROXY and isinstance(obj[1], tuple) and len(obj[1]) == 4:
                obj = (PROXY, (None, *obj[1][1:]))
        super().send(obj)

    def recv(self, *, timeout: float | None = None) -> Any:
        """Receive one message (its top level as a tuple); blocks up to ``timeout``."""
        obj = super().recv(timeout=timeout)
        if type(obj) is not list:
            return obj
        if len(obj) >= 2 and obj[0] == "#hello" and isinstance(obj[1], xmlrpc.client.Binary):
            obj[1] = obj[1].data
        elif len(obj) == 2 and obj[0] == ERROR and type(obj[1]) is list and len(obj[1]) == 3:
            obj[1] = _rebuild_error(*obj[1])
        elif len(obj) == 2 and obj[0] == PROXY and type(obj[1]) is list:
            obj[1] = tuple(obj[1])
        return tuple(obj)


def _describe_error(exc: Any, tb: Any = "") -> list:
    """An exception as XML-RPC can carry it: ``[module:qualname, args, traceback]``."""
    cls = type(exc)
    args = list(getattr(exc, "args", ()))
    try:
        xml_dumps(args)
    except Exception:
        args = [str(exc)]
    return [f"{cls.__module__}:{cls.__qualname__}", args, tb if isinstance(tb, str) else ""]


def _rebuild_error(name: Any, args: Any, tb: Any) -> tuple:
    """The ``(exception, traceback)`` of an error reply: the named class if this process
    has imported it (nothing is imported for it), else ``RemoteError`` naming it."""
    module, _, qualname = str(name).partition(":")
    cls: Any = sys.modules.get(module)
    for part in qualname.split("."):
        cls = getattr(cls, part, None)
    args = args if type(args) is list else [args]
    exc: BaseException | None = None
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            exc = cls(*args)
        except Exception:
            exc = None
    if exc is None:
        exc = RemoteError(f"{module}.{qualname}: {', '.join(map(str, args))}")
    return exc, tb if isinstance(tb, str) else ""


class XmlListener(Listener):
    """A ``Listener`` whose accepted connections are ``XmlConnection`` s."""

    def accept(self, *, timeout: float | None = None) -> XmlConnection:
        return XmlConnection(super().accept(timeout=timeout))


def XmlClient(address: Any, *args: Any, **kwds: Any) -> XmlConnection:  # noqa: N802
    """``Client`` whose connection is an ``XmlConnection`` (same arguments)."""
    return XmlConnection(Client(address, *args, **kwds))


listener_client: dict[str, tuple[Any, Any]] = {
    "pickle": (Listener, Client),
    "xmlrpclib": (XmlListener, XmlClient),
}


def check_serializer(serializer: Any) -> None:
    """Raise ``ValueError`` naming the choices for a serializer not in ``listener_client``."""
    if serializer not in listener_client:
        raise ValueError(
            f"serializer {serializer!r} is not supported; "
            f"use one of {', '.join(map(repr, listener_client))}"
        )
