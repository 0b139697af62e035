"""Drop-in face of ``multiprocessing.heap``; the code lives in ``plait.ipc.heap``."""

from plait.ipc.heap import Arena as Arena
from plait.ipc.heap import BufferWrapper
from plait.ipc.heap import Heap as Heap

__all__ = ["BufferWrapper"]
