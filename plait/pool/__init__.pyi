"""Types of this package for checkers: the names its ``__getattr__`` loads on first use
(see ``__init__.py``), imported from where they live; ``tests/test_typing.py`` checks
that this list and the package agree."""

from plait.pool.engine import PoolStats as PoolStats
from plait.pool.errors import MaybeEncodingError as MaybeEncodingError
from plait.pool.errors import PoolTerminatedError as PoolTerminatedError
from plait.pool.errors import RemoteTraceback as RemoteTraceback
from plait.pool.errors import SoftTimeoutError as SoftTimeoutError
from plait.pool.errors import TimeoutError as TimeoutError
from plait.pool.errors import WorkerLostError as WorkerLostError
from plait.pool.pool import Pool as Pool
from plait.pool.pool import ThreadPool as ThreadPool
from plait.pool.results import ApplyResult as ApplyResult
from plait.pool.results import AsyncResult as AsyncResult
from plait.pool.results import IMapIterator as IMapIterator
from plait.pool.results import IMapUnorderedIterator as IMapUnorderedIterator
from plait.pool.results import MapResult as MapResult
