"""Drop-in face of ``multiprocessing.queues``; the code lives in ``plait.ipc.queues``."""

from plait.ipc.queues import Empty as Empty
from plait.ipc.queues import Full as Full
from plait.ipc.queues import JoinableQueue, Queue, SimpleQueue

__all__ = ["Queue", "SimpleQueue", "JoinableQueue"]
