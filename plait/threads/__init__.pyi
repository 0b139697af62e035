"""Types of this package for checkers: the names its ``__getattr__`` loads on first use
(see ``__init__.py``), imported from where they live; ``tests/test_typing.py`` checks
that this list and the package agree."""

from plait.threads.lockorder import CheckedLock as CheckedLock
from plait.threads.lockorder import LockOrderViolation as LockOrderViolation
from plait.threads.lockorder import LockOrderWarning as LockOrderWarning
from plait.threads.lockorder import check_lock_order as check_lock_order
from plait.threads.lockorder import lock_order_checking as lock_order_checking
from plait.threads.lockorder import lock_order_reports as lock_order_reports
from plait.threads.queues import Empty as Empty
from plait.threads.queues import Full as Full
from plait.threads.queues import LifoQueue as LifoQueue
from plait.threads.queues import PriorityQueue as PriorityQueue
from plait.threads.queues import Queue as Queue
from plait.threads.queues import ShutDown as ShutDown
from plait.threads.queues import SimpleQueue as SimpleQueue
from plait.threads.sync import Barrier as Barrier
from plait.threads.sync import BoundedSemaphore as BoundedSemaphore
from plait.threads.sync import BrokenBarrierError as BrokenBarrierError
from plait.threads.sync import Condition as Condition
from plait.threads.sync import Event as Event
from plait.threads.sync import Lock as Lock
from plait.threads.sync import RLock as RLock
from plait.threads.sync import Semaphore as Semaphore
from plait.threads.sync import ThreadError as ThreadError
from plait.threads.thread import Thread as Thread
from plait.threads.thread import Timer as Timer
