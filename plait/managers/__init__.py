"""Managers: shared objects served by a server process to processes here and elsewhere.

One concept per module:

- ``protocol``: the messages: request and reply shapes, ``RemoteError``;
- ``proxy``: tokens, ``BaseProxy``/``AutoProxy``, this process's connections to each
  server, reference counting that rides on requests, ``batch()``;
- ``server``: the ``Server`` (one loop for local clients of objects that never block,
  a thread for a client while its calls may block);
- ``table``: the server's objects and sessions, which release what a dead client held;
- ``policy``: which requests the server's loop may answer itself;
- ``rings``: the shared-memory path of local clients (an inbox ring per server, an
  outbox ring per connection; no system call per call while both sides are awake);
- ``serializers``: ``listener_client``, how messages travel (pickle or XML-RPC);
- ``manager``: ``BaseManager`` (``register``, ``start``, ``connect``, ``shutdown``);
- ``sync``: ``SyncManager`` and the standard proxy types (``Manager()`` is defined in
  this package itself, see below);
- ``shared_memory``: ``SharedMemoryManager``, whose server holds shared memory blocks
  until it shuts down.

The interface is ``multiprocessing.managers``'s; past it: one request and one reply per
call and nothing else, ``batch()`` for many calls in one round trip, objects of dead
clients released (even when killed inside a call), proxies that survive fork and
threads, ``ManagerGoneError`` after shutdown, ``statistics()``.

Importing this package is cheap: ``Manager`` is defined here and the other names load
their module on first use (PEP 562), as ``multiprocessing.Manager`` imports its managers
module only when called. So ``plait.multiprocessing``, which re-exports ``Manager``,
costs a program (and every spawned child that re-imports it) nothing until a manager
is actually started.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plait._core.lazy import lazy_names

if TYPE_CHECKING:
    from plait.managers.sync import SyncManager

_HOME = {
    "BaseManager": "manager",
    "State": "manager",
    "Server": "server",
    "listener_client": "serializers",
    "RemoteError": "protocol",
    "SharedMemoryManager": "shared_memory",
    "SharedMemoryServer": "shared_memory",
    "HAS_SHMEM": "shared_memory",
    **dict.fromkeys(
        [
            "AutoProxy",
            "BaseProxy",
            "MakeProxyType",
            "ManagerGoneError",
            "NotExposedError",
            "RebuildProxy",
            "RemoteTraceback",
            "Token",
            "all_methods",
            "batch",
            "convert_to_error",
            "dispatch",
            "public_methods",
        ],
        "proxy",
    ),
    **dict.fromkeys(
        [
            "AcquirerProxy",
            "Array",
            "ArrayProxy",
            "BarrierProxy",
            "BaseListProxy",
            "ConditionProxy",
            "DictProxy",
            "EventProxy",
            "IteratorProxy",
            "ListProxy",
            "SetProxy",
            "Namespace",
            "NamespaceProxy",
            "BasePoolProxy",
            "PoolProxy",
            "ProcessLocalSet",
            "SyncManager",
            "rebuild_as_list",
            "reduce_array",
            "Value",
            "ValueProxy",
        ],
        "sync",
    ),
}

__all__ = sorted([*_HOME, "Manager"])


def Manager(*, ctx: Any = None) -> SyncManager:  # noqa: N802 - the standard library's name
    """Start and return a ``SyncManager`` (its server runs in a new child process).

    Blocks until the server listens. Use it in a ``with`` block, or call ``shutdown()``.
    """
    from plait.managers.sync import SyncManager

    manager = SyncManager(ctx=ctx)
    manager.start()
    return manager


__getattr__, __dir__ = lazy_names(
    __name__, {name: f"{__name__}.{module}" for name, module in _HOME.items()}, __all__
)
