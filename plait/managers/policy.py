"""The dispatch policy: which requests the server's loop may answer itself.

(Not ``dispatch.py``: ``plait.managers.dispatch`` is the standard library's function.)

The loop (``server.py``) serves many connections from one thread, so it must never run a
call that can block. Each request gets a :class:`Verdict` before it runs:

- ``INLINE``: it returns at once; the loop (or the ring thread) runs it. Calls on objects
  whose every method returns at once (``dict``, ``list``, ``set``, ``array``:
  ``_INLINE_TYPES``, and classes or makers marked ``_plait_inline_ = True``), creating
  such objects and those of ``_QUICK_MAKERS``, batches of inline calls, the server's
  own queries.
- ``TRY``: a call on a queue or an event. The loop tries it without blocking
  (``attempt(obj, method, args, kwds)``, the object's attempt function); only when it
  would block (``WAIT``) does a thread take it.
- ``ONCE``: making anything else (a user's type, a ``Pool``): a thread runs this request,
  then gives the connection back to the loop.
- ``THREAD``: a call that may block (``Lock.acquire``, a user's type, anything not known
  to return at once): a thread serves the connection from now on (``PROMOTE``).

What the loop then does with a request, the outcome of trying it:

- a reply, ready to send;
- ``WAIT``: a queue or event call that would block; a thread runs it and gives the
  connection back, unless the connection keeps waiting (``PROMOTE_AFTER``);
- ``ONCE``: as above;
- ``PROMOTE``: a thread serves the connection from now on.

A call on an object has the verdict of its kind, found once when the object enters the
table (``mode_of``) and kept in its entry; the server's own requests get theirs from
``verdict``. An attempt function answers a call with its reply (it ran without
blocking), ``RUN`` (the call cannot block: run it as asked) or None (it would block).
A request answered before it runs (one that did not unpickle, or has not the shape of a
request) travels as ``(READY, the error reply)`` where a request would.

Invariant: a verdict errs towards a thread. A request the policy cannot read (malformed,
an unknown id's shape) is ``THREAD``; a thread then answers it with the error. An unknown
object id is ``INLINE``: its reply is the error, at once.
"""

from __future__ import annotations

import array
import enum
from collections.abc import Callable
from typing import Any

from plait.managers.protocol import RETURN
from plait.threads import (
    Barrier,
    BoundedSemaphore,
    Condition,
    Empty,
    Event,
    Full,
    Lock,
    Queue,
    RLock,
    Semaphore,
)

__all__ = [
    "INLINE",
    "INLINE_REQUESTS",
    "ONCE",
    "PROMOTE",
    "PROMOTE_AFTER",
    "READY",
    "RUN",
    "THREAD",
    "TRY",
    "WAIT",
    "Attempt",
    "Verdict",
    "creation_verdict",
    "mode_of",
    "verdict",
]


class Verdict(enum.Enum):
    """How the loop treats a request (see the module notes)."""

    INLINE = "inline"  # it cannot block: the loop runs it
    TRY = "try"  # a queue or event: try it without blocking
    ONCE = "once"  # a thread runs it once, then gives the connection back
    THREAD = "thread"  # it may block: a thread serves the connection from now on
    WAIT = "wait"  # tried, and it would block: a thread runs it
    PROMOTE = "promote"  # a thread serves the connection from now on
    RUN = "run"  # an attempt's answer: the call cannot block, run it as asked
    READY = "ready"  # marks a request already answered: ``(READY, reply to send)``


# The members as module constants: the hot paths compare with ``is``, and a module global
# costs a fraction of an attribute of an ``Enum`` class.
INLINE = Verdict.INLINE
TRY = Verdict.TRY
ONCE = Verdict.ONCE
THREAD = Verdict.THREAD
WAIT = Verdict.WAIT
PROMOTE = Verdict.PROMOTE
RUN = Verdict.RUN
READY = Verdict.READY


# A call without blocking: its reply, RUN, or None (it would block).
Attempt = Callable[[Any, str, tuple, dict], Any]

# A connection whose calls had to wait this often keeps a thread: each waiting call
# otherwise starts a thread (tens of microseconds) and hands the connection back.
PROMOTE_AFTER = 3

# Objects whose every method returns at once: the loop serves them without a thread.
_INLINE_TYPES = (dict, list, set, array.array)
# The server's own requests that return at once.
INLINE_REQUESTS = frozenset(
    {"dummy", "number_of_objects", "debug_info", "get_methods", "shutdown", "statistics"}
)
# Makers whose objects may block in their methods, but not while being made: the loop
# creates them itself. Any other maker (a user's, Pool) runs in a thread, once.
_QUICK_MAKERS = (Queue, Event, Lock, RLock, Semaphore, BoundedSemaphore, Condition, Barrier)

_QUEUE_NONBLOCKING = frozenset(
    {
        "put_nowait",
        "get_nowait",
        "qsize",
        "empty",
        "full",
        "task_done",
        "shutdown",
        "statistics",
        "is_shutdown",
    }
)


def _queue_attempt(obj: Queue, method: str, args: tuple, kwds: dict) -> Any:
    """A queue call without blocking: its reply, ``RUN``, or None (it would block)."""
    if method == "get" or method == "put":
        at = 0 if method == "get" else 1
        block = args[at] if len(args) > at else kwds.get("block", True)
        if method == "put" and obj.maxsize <= 0:
            block = False  # an unbounded queue takes every item at once
        if not block:
            return RUN
        try:
            if method == "get":
                return RETURN, obj.get(False)
            obj.put(args[0] if args else kwds["item"], False)
            return RETURN, None
        except (Empty, Full):
            return None
    return RUN if method in _QUEUE_NONBLOCKING else None


def _event_attempt(obj: Event, method: str, args: tuple, kwds: dict) -> Any:
    """An event call without blocking: its reply, ``RUN``, or None (it would block)."""
    if method == "wait":
        return (RETURN, True) if obj.is_set() else None
    return RUN if method in ("is_set", "set", "clear") else None


def mode_of(obj: Any) -> tuple[Verdict, Attempt | None]:
    """How the loop treats calls on ``obj``: ``INLINE``, ``THREAD``, or ``TRY`` with the
    function that tries a call without blocking."""
    if type(obj) in _INLINE_TYPES or getattr(type(obj), "_plait_inline_", False):
        return INLINE, None
    if isinstance(obj, Queue):
        return TRY, _queue_attempt
    if isinstance(obj, Event):
        return TRY, _event_attempt
    return THREAD, None


def creation_verdict(make: Any) -> Verdict:
    """The verdict of creating an object with ``make``: ``INLINE`` for makers of objects
    that never block (a type of ``_INLINE_TYPES``, a class or function marked
    ``_plait_inline_ = True``) and for ``_QUICK_MAKERS``, else ``ONCE``."""
    if make in _INLINE_TYPES or getattr(make, "_plait_inline_", False) or make in _QUICK_MAKERS:
        return INLINE
    return ONCE


def verdict(table: Any, public: Any, method: Any, args: Any) -> Verdict:
    """The verdict of the request ``(None, method, args, ...)`` of the server itself, to a
    server with ``table`` (a ``table.Table``) and its own requests ``public``: ``INLINE``,
    ``ONCE`` or ``THREAD``. (A call on an object has the verdict its entry keeps,
    ``Entry.mode``; the server reads it on its hot path.)"""
    try:
        if method == "create":
            make, _, _, _ = table.registry[args[0]]
            return creation_verdict(make)
        if method == "batch":
            objects = table.objects
            for ident, _, _, _ in args:
                entry = objects.get(ident)
                if entry is not None and entry.mode is not INLINE:  # unknown: the error
                    return THREAD
            return INLINE
        return INLINE if method in INLINE_REQUESTS or method in public else THREAD
    except Exception:
        return THREAD  # a malformed request: a thread will answer it with the error
