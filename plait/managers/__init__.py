"""Managers: shared objects served by a server process to processes here and elsewhere.

One concept per module:

- ``proxy``: tokens, ``BaseProxy``/``AutoProxy``, this process's connections to each
  server, reference counting that rides on requests, ``batch()``;
- ``server``: the ``Server`` (one loop for local clients of objects that never block,
  a thread for a client while its calls may block, the object table, sessions that
  release what a dead client held);
- ``manager``: ``BaseManager`` (``register``, ``start``, ``connect``, ``shutdown``);
- ``sync``: ``SyncManager``, ``Manager()`` and the standard proxy types.

The interface is ``multiprocessing.managers``'s; past it: one request and one reply per
call and nothing else, ``batch()`` for many calls in one round trip, objects of dead
clients released (even when killed inside a call), proxies that survive fork and
threads, ``ManagerGoneError`` after shutdown, ``statistics()``.
"""

from plait.managers.manager import BaseManager, State
from plait.managers.proxy import (
    AutoProxy,
    BaseProxy,
    MakeProxyType,
    ManagerGoneError,
    RebuildProxy,
    RemoteError,
    RemoteTraceback,
    Token,
    batch,
    public_methods,
)
from plait.managers.server import Server
from plait.managers.sync import (
    AcquirerProxy,
    Array,
    ArrayProxy,
    BarrierProxy,
    BaseListProxy,
    ConditionProxy,
    DictProxy,
    EventProxy,
    IteratorProxy,
    ListProxy,
    Manager,
    Namespace,
    NamespaceProxy,
    PoolProxy,
    SyncManager,
    Value,
    ValueProxy,
)

__all__ = [
    "AcquirerProxy",
    "Array",
    "ArrayProxy",
    "AutoProxy",
    "BarrierProxy",
    "BaseListProxy",
    "BaseManager",
    "BaseProxy",
    "ConditionProxy",
    "DictProxy",
    "EventProxy",
    "IteratorProxy",
    "ListProxy",
    "MakeProxyType",
    "Manager",
    "ManagerGoneError",
    "Namespace",
    "NamespaceProxy",
    "PoolProxy",
    "RebuildProxy",
    "RemoteError",
    "RemoteTraceback",
    "Server",
    "State",
    "SyncManager",
    "Token",
    "Value",
    "ValueProxy",
    "batch",
    "public_methods",
]
