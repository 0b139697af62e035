"""Drop-in face of ``multiprocessing.managers``: ``from plait.multiprocessing import managers``.

Re-exports only; the code and its explanation live in ``plait.managers``. Every public
name of the standard module is here except the modules it happens to import (``os``,
``util``...) and ``format_exc``/``getpid``; ``get_spawning_popen`` is the context's
(``None``: plait has no popen objects).
"""

from plait._core.errors import ProcessError
from plait.managers import HAS_SHMEM as HAS_SHMEM
from plait.managers import (
    AcquirerProxy,
    Array,
    ArrayProxy,
    AutoProxy,
    BarrierProxy,
    BaseListProxy,
    BaseManager,
    BasePoolProxy,
    BaseProxy,
    ConditionProxy,
    DictProxy,
    EventProxy,
    IteratorProxy,
    ListProxy,
    MakeProxyType,
    Namespace,
    NamespaceProxy,
    PoolProxy,
    ProcessLocalSet,
    RebuildProxy,
    RemoteError,
    Server,
    SharedMemoryManager,
    SharedMemoryServer,
    State,
    SyncManager,
    Token,
    Value,
    ValueProxy,
    all_methods,
    convert_to_error,
    dispatch,
    public_methods,
    rebuild_as_list,
    reduce_array,
)
from plait.managers import listener_client as listener_client
from plait.process.context import get_spawning_popen

# ``HAS_SHMEM`` and ``listener_client`` are here but not in ``__all__``, as in the
# standard module.
__all__ = [
    "AcquirerProxy",
    "Array",
    "ArrayProxy",
    "AutoProxy",
    "BarrierProxy",
    "BaseListProxy",
    "BaseManager",
    "BasePoolProxy",
    "BaseProxy",
    "ConditionProxy",
    "DictProxy",
    "EventProxy",
    "IteratorProxy",
    "ListProxy",
    "MakeProxyType",
    "Namespace",
    "NamespaceProxy",
    "PoolProxy",
    "ProcessError",
    "ProcessLocalSet",
    "RebuildProxy",
    "RemoteError",
    "Server",
    "SharedMemoryManager",
    "SharedMemoryServer",
    "State",
    "SyncManager",
    "Token",
    "Value",
    "ValueProxy",
    "all_methods",
    "convert_to_error",
    "dispatch",
    "get_spawning_popen",
    "public_methods",
    "rebuild_as_list",
    "reduce_array",
]
