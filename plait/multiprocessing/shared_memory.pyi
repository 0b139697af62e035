"""Types of this face for checkers: at run time it is ``plait.ipc.shared_memory`` itself
(see ``shared_memory.py``)."""

from plait.ipc.shared_memory import ShareableList as ShareableList
from plait.ipc.shared_memory import SharedMemory as SharedMemory
