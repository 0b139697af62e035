"""Drop-in face of ``multiprocessing.shared_memory``; the code lives in ``plait.ipc``."""

from plait.ipc.shared_memory import ShareableList, SharedMemory

__all__ = ["ShareableList", "SharedMemory"]
