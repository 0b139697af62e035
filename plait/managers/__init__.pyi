"""Types of this package for checkers: the names its ``__getattr__`` loads on first use
(see ``__init__.py``), imported from where they live; ``tests/test_typing.py`` checks
that this list and the package agree."""

from typing import Any

from plait.managers.manager import BaseManager as BaseManager
from plait.managers.manager import State as State
from plait.managers.proxy import AutoProxy as AutoProxy
from plait.managers.proxy import BaseProxy as BaseProxy
from plait.managers.proxy import MakeProxyType as MakeProxyType
from plait.managers.proxy import ManagerGoneError as ManagerGoneError
from plait.managers.proxy import NotExposedError as NotExposedError
from plait.managers.proxy import RebuildProxy as RebuildProxy
from plait.managers.proxy import RemoteError as RemoteError
from plait.managers.proxy import RemoteTraceback as RemoteTraceback
from plait.managers.proxy import Token as Token
from plait.managers.proxy import all_methods as all_methods
from plait.managers.proxy import batch as batch
from plait.managers.proxy import convert_to_error as convert_to_error
from plait.managers.proxy import dispatch as dispatch
from plait.managers.proxy import public_methods as public_methods
from plait.managers.serializers import listener_client as listener_client
from plait.managers.server import Server as Server
from plait.managers.shared_memory import HAS_SHMEM as HAS_SHMEM
from plait.managers.shared_memory import SharedMemoryManager as SharedMemoryManager
from plait.managers.shared_memory import SharedMemoryServer as SharedMemoryServer
from plait.managers.sync import AcquirerProxy as AcquirerProxy
from plait.managers.sync import Array as Array
from plait.managers.sync import ArrayProxy as ArrayProxy
from plait.managers.sync import BarrierProxy as BarrierProxy
from plait.managers.sync import BaseListProxy as BaseListProxy
from plait.managers.sync import BasePoolProxy as BasePoolProxy
from plait.managers.sync import ConditionProxy as ConditionProxy
from plait.managers.sync import DictProxy as DictProxy
from plait.managers.sync import EventProxy as EventProxy
from plait.managers.sync import IteratorProxy as IteratorProxy
from plait.managers.sync import ListProxy as ListProxy
from plait.managers.sync import Namespace as Namespace
from plait.managers.sync import NamespaceProxy as NamespaceProxy
from plait.managers.sync import PoolProxy as PoolProxy
from plait.managers.sync import ProcessLocalSet as ProcessLocalSet
from plait.managers.sync import SetProxy as SetProxy
from plait.managers.sync import SyncManager as SyncManager
from plait.managers.sync import Value as Value
from plait.managers.sync import ValueProxy as ValueProxy
from plait.managers.sync import rebuild_as_list as rebuild_as_list
from plait.managers.sync import reduce_array as reduce_array

def Manager(*, ctx: Any = None) -> SyncManager: ...
