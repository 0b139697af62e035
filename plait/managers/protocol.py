"""The manager's messages: what a client sends, what the server answers.

A client sends a *request* and reads exactly one *reply* per request, in order, on its
connection (or through its rings, ``rings.py``)::

    request  (ident, method, args, kwds, control)
    reply    (RETURN, value) | (ERROR, (exception, remote traceback)) | (PROXY, (...))

``ident`` is the id of the object called, or None for a request of the server itself
(``create``, ``batch``, ``shutdown``...); ``control`` carries the reference counting of
the client's proxies (``(op, ident)`` pairs) or None. A ``PROXY`` reply is a new shared
object: ``(proxytype, typeid, ident, exposed)``.

This module is the bottom of the package: the proxies, the serializers and the server
all speak it, and it imports none of them.
"""

from __future__ import annotations

from multiprocessing import managers as _standard_managers  # for RemoteError only
from typing import Any, NamedTuple

__all__ = ["ERROR", "PROXY", "RETURN", "RemoteError", "Request"]

RETURN, ERROR, PROXY = 0, 1, 2  # the kinds of reply


class Request(NamedTuple):
    """A request: on the wire a plain 5-tuple of these fields (unpacked by position on
    the server's hot path), a ``Request`` where the server makes one."""

    ident: int | None  # the object called; None: a request of the server itself
    method: str
    args: tuple
    kwds: dict
    control: Any  # ``(op, ident)`` pairs of reference counting, or None


class RemoteError(_standard_managers.RemoteError):
    """The manager's server failed to handle a request (not an error of the method).

    A subclass of ``multiprocessing.managers.RemoteError``, so a program's
    ``except multiprocessing.managers.RemoteError`` keeps working (DESIGN.md's rule).
    """
