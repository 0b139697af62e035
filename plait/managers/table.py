"""The server's table: the shared objects, who holds them, and calls on them.

``objects`` maps an id (a counter, never reused, so a stale proxy can never reach another
object) to an :class:`Entry`: the object, the methods it exposes, the typeids of the
methods that return proxies, its own typeid, and how the loop may call it (its
``policy`` mode). ``refs`` counts its holders: sessions that hold it (``held``: the
client process has live proxies of it), sessions that pinned it (pickled a proxy of it),
and proxies living in the server (``inside``: a managed list stored in a managed dict).

A :class:`Session` is one client process: how many connections it has open, what it
holds and what it pinned. When its last connection closes, for any reason (shutdown,
exit, SIGKILL mid-call), its holds and pins go: objects a dead client created are
released.

Invariants: the hot path reads ``objects`` without the lock (a dict lookup is atomic
under the GIL); every change of the table, the counts and the sessions takes ``lock``.
An object whose count reaches zero is removed, and dropped outside the lock (its
``__del__`` may do anything, and the lock is reentrant because a collection inside a
locked region may finalize a proxy living in the server, whose ``__del__`` calls
``unhold``).
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Any, NamedTuple

from plait.managers.policy import Attempt, Verdict, mode_of
from plait.managers.protocol import ERROR, PROXY, RETURN, RemoteError
from plait.managers.proxy import NotExposedError, error_reply, public_methods

__all__ = ["Entry", "Registration", "Session", "Table"]

_VIEWS = (type({}.keys()), type({}.values()), type({}.items()))


class Registration(NamedTuple):
    """A typeid of a manager's registry, as ``BaseManager.register`` files it."""

    callable: Any  # makes the object in the server; None: clients cannot create it
    exposed: tuple[str, ...] | None  # None: the object's public methods
    method_to_typeid: dict[str, str] | None  # methods whose results come back as proxies
    proxytype: Any  # the proxy class clients get


@dataclass(slots=True)
class Entry:
    """One shared object in the table. Slots, not a NamedTuple: CPython reads a slot as
    fast as an item of a plain tuple, where a NamedTuple's fields and items take its slow
    generic path, and every request reads its entry."""

    obj: Any
    exposed: frozenset[str]
    to_typeid: dict[str, str] | None  # method_to_typeid
    typeid: str
    mode: Verdict  # INLINE, TRY or THREAD (``policy.mode_of``)
    attempt: Attempt | None  # for TRY: the call without blocking


class Session:
    """One client process: how many connections it has open, what it holds and pinned."""

    __slots__ = ("conns", "held", "pins")

    def __init__(self) -> None:
        self.conns = 0
        self.held: set[int] = set()
        self.pins: set[int] = set()


class Table:
    """The objects a server holds for its clients, made from ``registry`` (typeid to
    ``Registration``, or a 4-tuple of the same fields); ``address`` names the server in
    errors."""

    def __init__(self, registry: dict[str, tuple], address: Any) -> None:
        self.registry = registry
        self.address = address
        self.objects: dict[int, Entry] = {}
        self.refs: dict[int, int] = {}
        self.inside: dict[int, int] = {}  # of refs, those held by proxies in the server
        self.sessions: dict[bytes, Session] = {}
        self.lock = threading.RLock()  # reentrant: see the module notes
        self._ids = itertools.count(1)

    def call(self, ident: int, method: str, args: tuple, kwds: dict, session) -> tuple:
        """Run one method call on object ``ident``; return the reply."""
        try:
            entry = self.objects[ident]
        except (KeyError, TypeError):
            return ERROR, (
                ReferenceError(
                    f"the manager at {self.address!r} holds no object with id {ident!r}"
                ),
                "",
            )
        obj = entry.obj
        try:
            if method not in entry.exposed:
                if method == "#getvalue":
                    return RETURN, obj
                if method == "__repr__" or method == "__str__":
                    return RETURN, getattr(obj, method)()
                raise NotExposedError(
                    f"method {method!r} of {entry.typeid!r} object is not exposed "
                    f"(exposed: {', '.join(sorted(entry.exposed))})"
                )
            result = getattr(obj, method)(*args, **kwds)
        except Exception as exc:
            return error_reply(exc)
        except KeyboardInterrupt:
            raise  # Ctrl-C in the thread of serve_forever(): it stops the server
        except BaseException as exc:  # SystemExit, say: the serving thread goes on
            return error_reply(_escaped(exc, f"{entry.typeid}.{method}()"))
        to_typeid = entry.to_typeid
        if to_typeid is not None and method in to_typeid:
            return self._proxy_reply(result, to_typeid[method], session)
        if type(result) in _VIEWS:
            result = list(result)  # as the standard library: dict views come back as lists
        return RETURN, result

    def create(self, session: Session | None, typeid: str, *args, **kwds) -> tuple:
        """Make a new object of ``typeid``; ``session`` holds it. Returns ``(id, exposed)``.

        Raises ``KeyError`` naming an unknown typeid, ``TypeError`` for a typeid that
        has no callable here, and whatever the callable raised.
        """
        try:
            make, _, _, _ = self.registry[typeid]
        except (KeyError, TypeError):
            raise KeyError(f"typeid {typeid!r} is not registered with this manager") from None
        if make is None:
            raise TypeError(f"typeid {typeid!r} has no callable in this manager's server")
        try:
            obj = make(*args, **kwds)
        except (Exception, KeyboardInterrupt):
            raise
        except BaseException as exc:  # as in ``call``
            raise _escaped(exc, f"making a {typeid!r} object") from exc
        ident, exposed, _ = self._register(obj, typeid, session)
        return ident, exposed

    def _register(self, obj: Any, typeid: str, session: Session | None):
        try:
            _, exposed, to_typeid, proxytype = self.registry[typeid]
        except KeyError:
            raise KeyError(f"typeid {typeid!r} is not registered with this manager") from None
        if exposed is None:
            exposed = getattr(obj, "_exposed_", None) or public_methods(obj)
        exposed = tuple(exposed)
        ident = next(self._ids)
        with self.lock:
            mode, attempt = mode_of(obj)
            self.objects[ident] = Entry(
                obj, frozenset(exposed), to_typeid or None, typeid, mode, attempt
            )
            # One holder: the session, or (a call from inside the server) the new proxy.
            self.refs[ident] = 1
            if session is not None:
                session.held.add(ident)
            else:
                self.inside[ident] = 1
        return ident, exposed, proxytype

    def _proxy_reply(self, result: Any, typeid: str, session: Session | None) -> tuple:
        try:
            ident, exposed, proxytype = self._register(result, typeid, session)
        except Exception as exc:
            return error_reply(exc)
        return PROXY, (proxytype, typeid, ident, exposed)

    def add_ref(self, holds: set[int], ident: int) -> None:
        """Count ``ident`` as held by ``holds`` (a session's held or pins), once."""
        with self.lock:
            if ident in self.refs and ident not in holds:
                holds.add(ident)
                self.refs[ident] += 1

    def hold(self, ident: int) -> None:
        """One more holder inside the server (a proxy rebuilt here)."""
        with self.lock:
            if ident in self.refs:
                self.refs[ident] += 1
                self.inside[ident] = self.inside.get(ident, 0) + 1

    def unhold(self, ident: int) -> None:
        """One holder inside the server less."""
        with self.lock:
            n = self.inside.get(ident, 0)
            if n > 1:
                self.inside[ident] = n - 1
            else:
                self.inside.pop(ident, None)
            freed = self._decref(ident)
        del freed

    def number_of_objects(self) -> int:
        """How many objects some client holds, as the standard library counts them: an
        object only other shared objects refer to (a managed list stored in a managed
        dict, and nothing else) is not counted; ``statistics()`` counts every one."""
        with self.lock:
            inside = self.inside
            return sum(1 for ident, n in self.refs.items() if n > inside.get(ident, 0))

    def _decref(self, ident: int) -> Entry | None:
        """Count one holder of ``ident`` out (lock held); return what it freed, if anything."""
        n = self.refs.get(ident)
        if n is None:
            return None
        if n > 1:
            self.refs[ident] = n - 1
            return None
        del self.refs[ident]
        self.inside.pop(ident, None)
        return self.objects.pop(ident, None)

    def control(self, session: Session, control: Any) -> None:
        """Apply a request's control list: ``(op, ident)`` pairs, ``op`` one of
        ``incref``, ``decref`` and ``pin``; a malformed list is ignored from where it
        stops making sense."""
        freed = []
        try:
            with self.lock:
                for op, ident in control:
                    if op == "decref":
                        if ident in session.held:
                            session.held.discard(ident)
                            freed.append(self._decref(ident))
                        continue
                    holds = session.held if op == "incref" else session.pins
                    if ident in self.refs and ident not in holds:
                        holds.add(ident)
                        self.refs[ident] += 1
        except (TypeError, ValueError):
            pass  # a malformed control list: ignore the rest of it
        del freed

    def join(self, sid: bytes) -> Session:
        """The session ``sid``, made on its first connection; one more connection of it."""
        with self.lock:
            session = self.sessions.get(sid)
            if session is None:
                session = self.sessions[sid] = Session()
            session.conns += 1
        return session

    def leave(self, sid: bytes, session: Session) -> None:
        """One connection of ``session`` less; with its last, its holds and pins go."""
        freed = []
        with self.lock:
            session.conns -= 1
            if session.conns > 0:
                return
            self.sessions.pop(sid, None)
            for ident in itertools.chain(session.held, session.pins):
                freed.append(self._decref(ident))
            session.held.clear()
            session.pins.clear()
        del freed

    def clear(self) -> None:
        """Drop every object (the server stops); they die outside the lock."""
        with self.lock:
            objects = list(self.objects.values())
            self.objects.clear()
            self.refs.clear()
            self.inside.clear()
        del objects

    def debug_info(self) -> str:
        """One line per object held: its id, holders and the start of its ``str``."""
        with self.lock:
            entries = [
                (ident, self.refs.get(ident, 0), entry.obj)
                for ident, entry in sorted(self.objects.items())
            ]
        return "\n".join(
            f"  {ident}:       refcount={refs}\n    {str(obj)[:75]}" for ident, refs, obj in entries
        )


def _escaped(exc: BaseException, what: str) -> RemoteError:
    """The error a caller gets for ``SystemExit`` (or the like) raised by ``what`` in
    the server: raised there as it is, it would end the caller instead (the standard
    server's thread died of it, and its caller got ``EOFError``)."""
    error = RemoteError(f"{what} raised {exc!r} in the manager's server")
    error.__cause__ = exc
    return error
