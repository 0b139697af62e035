"""``SyncManager`` and ``Manager()``: the standard shared types and their proxies.

The objects live in the manager's server process as ordinary objects of one process:
``dict``, ``list`` and ``set``, ``Namespace``, ``Value`` and ``Array`` (an
``array.array``), the thread primitives and queues of ``plait.threads`` (the server
serves each client connection with its own thread, so a client blocked in ``acquire``
or ``get`` blocks only itself), and a ``plait.pool.Pool`` (imported when the first one
is made). Clients hold the proxies below, whose names, exposed methods and behaviour
are those of ``multiprocessing.managers`` (3.14's, on every version): ``DictProxy``,
``ListProxy``, ``SetProxy``, ``NamespaceProxy``, ``ValueProxy``, ``ArrayProxy``,
``AcquirerProxy``, ``ConditionProxy``, ``EventProxy``, ``BarrierProxy``, ``PoolProxy``,
``IteratorProxy``. Results that stay on the server (``iter(d)``, ``pool.apply_async``)
come back as proxies (``method_to_typeid``).

Blocking methods take the standard ``timeout`` arguments; the server applies them.
"""

from __future__ import annotations

import array
import os
import weakref
from typing import TYPE_CHECKING, Any

from plait.managers.manager import BaseManager
from plait.managers.proxy import BaseProxy, MakeProxyType
from plait.threads import (
    Barrier,
    BoundedSemaphore,
    Condition,
    Event,
    Lock,
    Queue,
    RLock,
    Semaphore,
    waiting,
)

__all__ = [
    "SyncManager",
    "Namespace",
    "Value",
    "Array",
    "IteratorProxy",
    "AcquirerProxy",
    "ConditionProxy",
    "EventProxy",
    "BarrierProxy",
    "NamespaceProxy",
    "ValueProxy",
    "BaseListProxy",
    "ListProxy",
    "DictProxy",
    "SetProxy",
    "ArrayProxy",
    "BasePoolProxy",
    "PoolProxy",
    "ProcessLocalSet",
    "rebuild_as_list",
    "reduce_array",
]


class Namespace:
    """A bag of attributes, shared through ``NamespaceProxy``."""

    _plait_inline_ = True  # no method blocks: the server's loop serves it

    def __init__(self, /, **kwds: Any) -> None:
        self.__dict__.update(kwds)

    def __repr__(self) -> str:
        items = [f"{k}={v!r}" for k, v in self.__dict__.items() if not k.startswith("_")]
        return f"{type(self).__name__}({', '.join(sorted(items))})"


class Value:
    """A value with ``get``/``set`` and a ``value`` property (``lock`` is accepted, unused:
    the proxy's calls are already one at a time on the server's object)."""

    _plait_inline_ = True  # no method blocks: the server's loop serves it

    def __init__(self, typecode: str, value: Any, lock: Any = True) -> None:
        self._typecode = typecode
        self._value = value

    def get(self) -> Any:
        return self._value

    def set(self, value: Any) -> None:
        self._value = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._typecode!r}, {self._value!r})"

    value = property(get, set)


def Array(typecode: str, sequence: Any, lock: Any = True) -> array.array:  # noqa: N802
    """An ``array.array`` of ``typecode`` (``lock`` accepted for compatibility)."""
    return array.array(typecode, sequence)


Array._plait_inline_ = True


def reduce_array(a: array.array) -> tuple:
    """How an ``array.array`` pickles (``(array.array, (typecode, bytes))``)."""
    return array.array, (a.typecode, a.tobytes())


def rebuild_as_list(obj: Any) -> tuple:
    """A ``__reduce__`` value that rebuilds ``obj`` (any iterable) as a list."""
    return list, (list(obj),)


class ProcessLocalSet(set):
    """A set that is empty in a child made by fork, and pickles as an empty one."""

    def __init__(self) -> None:
        super().__init__()
        _process_local_sets[id(self)] = self

    def __reduce__(self):
        return type(self), ()


# By id: a set is not hashable.
_process_local_sets: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _clear_process_local_sets() -> None:
    for s in list(_process_local_sets.values()):
        s.clear()


os.register_at_fork(after_in_child=_clear_process_local_sets)


def _pool(*args: Any, **kwds: Any) -> Any:
    from plait.pool import Pool  # noqa: PLC0415 - managers import the pool layer lazily

    return Pool(*args, **kwds)


class IteratorProxy(BaseProxy):
    _exposed_ = ("__next__", "send", "throw", "close")

    def __iter__(self) -> IteratorProxy:
        return self

    def __next__(self, *args: Any) -> Any:
        return self._callmethod("__next__", args)

    def send(self, *args: Any) -> Any:
        return self._callmethod("send", args)

    def throw(self, *args: Any) -> Any:
        return self._callmethod("throw", args)

    def close(self, *args: Any) -> Any:
        return self._callmethod("close", args)


class AcquirerProxy(BaseProxy):
    _exposed_ = ("acquire", "release")

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Acquire on the server; blocks there (up to ``timeout`` seconds)."""
        args = (blocking,) if timeout is None else (blocking, timeout)
        return self._callmethod("acquire", args)

    def release(self) -> None:
        return self._callmethod("release")

    def __enter__(self) -> bool:
        return self._callmethod("acquire")

    def __exit__(self, *exc: Any) -> None:
        return self._callmethod("release")


class ConditionProxy(AcquirerProxy):
    _exposed_ = ("acquire", "release", "wait", "notify", "notify_all")

    def wait(self, timeout: float | None = None) -> bool:
        return self._callmethod("wait", (timeout,))

    def notify(self, n: int = 1) -> None:
        return self._callmethod("notify", (n,))

    def notify_all(self) -> None:
        return self._callmethod("notify_all")

    # Waits through ``wait``, evaluating ``predicate`` here, in the client.
    wait_for = waiting.Condition.wait_for


class EventProxy(BaseProxy):
    _exposed_ = ("is_set", "set", "clear", "wait")

    def is_set(self) -> bool:
        return self._callmethod("is_set")

    def set(self) -> None:
        return self._callmethod("set")

    def clear(self) -> None:
        return self._callmethod("clear")

    def wait(self, timeout: float | None = None) -> bool:
        return self._callmethod("wait", (timeout,))


class BarrierProxy(BaseProxy):
    _exposed_ = ("__getattribute__", "wait", "abort", "reset")

    def wait(self, timeout: float | None = None) -> int:
        return self._callmethod("wait", (timeout,))

    def abort(self) -> None:
        return self._callmethod("abort")

    def reset(self) -> None:
        return self._callmethod("reset")

    @property
    def parties(self) -> int:
        return self._callmethod("__getattribute__", ("parties",))

    @property
    def n_waiting(self) -> int:
        return self._callmethod("__getattribute__", ("n_waiting",))

    @property
    def broken(self) -> bool:
        return self._callmethod("__getattribute__", ("broken",))


class NamespaceProxy(BaseProxy):
    _exposed_ = ("__getattribute__", "__setattr__", "__delattr__")

    def __getattr__(self, key: str) -> Any:
        if key[0] == "_":
            return object.__getattribute__(self, key)
        return object.__getattribute__(self, "_callmethod")("__getattribute__", (key,))

    def __setattr__(self, key: str, value: Any) -> None:
        if key[0] == "_":
            return object.__setattr__(self, key, value)
        return object.__getattribute__(self, "_callmethod")("__setattr__", (key, value))

    def __delattr__(self, key: str) -> None:
        if key[0] == "_":
            return object.__delattr__(self, key)
        return object.__getattribute__(self, "_callmethod")("__delattr__", (key,))


class ValueProxy(BaseProxy):
    _exposed_ = ("get", "set")

    def get(self) -> Any:
        return self._callmethod("get")

    def set(self, value: Any) -> None:
        return self._callmethod("set", (value,))

    value = property(get, set)


BaseListProxy = MakeProxyType(
    "BaseListProxy",
    (
        "__add__",
        "__contains__",
        "__delitem__",
        "__getitem__",
        "__len__",
        "__mul__",
        "__reversed__",
        "__rmul__",
        "__setitem__",
        "append",
        "clear",
        "copy",
        "count",
        "extend",
        "index",
        "insert",
        "pop",
        "remove",
        "reverse",
        "sort",
        "__imul__",
    ),
)


class ListProxy(BaseListProxy):
    def __iadd__(self, value: Any) -> ListProxy:
        self._callmethod("extend", (value,))
        return self

    def __imul__(self, value: Any) -> ListProxy:
        self._callmethod("__imul__", (value,))
        return self


_DictBase = MakeProxyType(
    "DictProxy",
    (
        "__contains__",
        "__delitem__",
        "__getitem__",
        "__ior__",
        "__iter__",
        "__len__",
        "__or__",
        "__reversed__",
        "__ror__",
        "__setitem__",
        "clear",
        "copy",
        "fromkeys",
        "get",
        "items",
        "keys",
        "pop",
        "popitem",
        "setdefault",
        "update",
        "values",
    ),
)


class DictProxy(_DictBase):
    _method_to_typeid_ = {"__iter__": "Iterator"}

    def __ior__(self, value: Any) -> DictProxy:
        self._callmethod("update", (value,))  # as |=, without sending the dict back
        return self


_SetBase = MakeProxyType(
    "SetProxy",
    (
        "__and__",
        "__contains__",
        "__ge__",
        "__gt__",
        "__iand__",
        "__ior__",
        "__isub__",
        "__iter__",
        "__ixor__",
        "__le__",
        "__len__",
        "__lt__",
        "__or__",
        "__rand__",
        "__ror__",
        "__rsub__",
        "__rxor__",
        "__sub__",
        "__xor__",
        "add",
        "clear",
        "copy",
        "difference",
        "difference_update",
        "discard",
        "intersection",
        "intersection_update",
        "isdisjoint",
        "issubset",
        "issuperset",
        "pop",
        "remove",
        "symmetric_difference",
        "symmetric_difference_update",
        "union",
        "update",
    ),
)


def _in_place(method: str) -> Any:
    """A set's in-place operator as the named method that makes the same change, so the
    reply is not the whole set; like a set's, it takes only sets."""

    def operator(self: Any, value: Any) -> Any:
        if not isinstance(value, set | frozenset):
            return NotImplemented  # as on a set: then ``self | value``, a TypeError
        self._callmethod(method, (value,))
        return self

    return operator


class SetProxy(_SetBase):
    __ior__ = _in_place("update")
    __iand__ = _in_place("intersection_update")
    __ixor__ = _in_place("symmetric_difference_update")
    __isub__ = _in_place("difference_update")


ArrayProxy = MakeProxyType("ArrayProxy", ("__len__", "__getitem__", "__setitem__"))

BasePoolProxy = MakeProxyType(
    "PoolProxy",
    (
        "apply",
        "apply_async",
        "close",
        "imap",
        "imap_unordered",
        "join",
        "map",
        "map_async",
        "starmap",
        "starmap_async",
        "terminate",
    ),
)


class PoolProxy(BasePoolProxy):
    _method_to_typeid_ = {
        "apply_async": "AsyncResult",
        "map_async": "AsyncResult",
        "starmap_async": "AsyncResult",
        "imap": "Iterator",
        "imap_unordered": "Iterator",
    }

    def __enter__(self) -> PoolProxy:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.terminate()


class SyncManager(BaseManager):
    """A manager with the standard shared types: ``m.dict()``, ``m.Lock()``, ``m.Queue()``...

    >>> with SyncManager() as m:
    ...     d = m.dict()
    ...     d["x"] = 1
    ...     d.copy()
    {'x': 1}
    """

    if TYPE_CHECKING:  # the methods register() makes below, as type checkers see them

        def Queue(self, maxsize: int = 0) -> Any: ...
        def JoinableQueue(self, maxsize: int = 0) -> Any: ...
        def Event(self) -> EventProxy: ...
        def Lock(self) -> AcquirerProxy: ...
        def RLock(self) -> AcquirerProxy: ...
        def Semaphore(self, value: int = 1) -> AcquirerProxy: ...
        def BoundedSemaphore(self, value: int = 1) -> AcquirerProxy: ...
        def Condition(self, lock: Any = None) -> ConditionProxy: ...
        def Barrier(
            self, parties: int, action: Any = None, timeout: float | None = None
        ) -> BarrierProxy: ...
        def Pool(self, *args: Any, **kwargs: Any) -> PoolProxy: ...
        def list(self, *args: Any) -> ListProxy: ...
        def dict(self, *args: Any, **kwargs: Any) -> DictProxy: ...
        def Value(self, typecode: Any, value: Any, lock: bool = True) -> ValueProxy: ...
        def Array(self, typecode: Any, sequence: Any, lock: bool = True) -> Any: ...
        def Namespace(self, **kwargs: Any) -> NamespaceProxy: ...


SyncManager.register("Queue", Queue)
SyncManager.register("JoinableQueue", Queue)
SyncManager.register("Event", Event, EventProxy)
SyncManager.register("Lock", Lock, AcquirerProxy)
SyncManager.register("RLock", RLock, AcquirerProxy)
SyncManager.register("Semaphore", Semaphore, AcquirerProxy)
SyncManager.register("BoundedSemaphore", BoundedSemaphore, AcquirerProxy)
SyncManager.register("Condition", Condition, ConditionProxy)
SyncManager.register("Barrier", Barrier, BarrierProxy)
SyncManager.register("Pool", _pool, PoolProxy)
SyncManager.register("list", list, ListProxy)
SyncManager.register("dict", dict, DictProxy)
SyncManager.register("set", set, SetProxy)
SyncManager.register("Value", Value, ValueProxy)
SyncManager.register("Array", Array, ArrayProxy)
SyncManager.register("Namespace", Namespace, NamespaceProxy)
SyncManager.register("Iterator", proxytype=IteratorProxy, create_method=False)
SyncManager.register("AsyncResult", create_method=False)


# ``Manager()`` lives in ``plait/managers/__init__.py``: importing it must stay cheap.
