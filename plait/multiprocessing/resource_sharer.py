"""Drop-in face of ``multiprocessing.resource_sharer``; the code lives in
``plait.ipc.reduction``.

``multiprocessing`` runs a background server thread here that hands fds to other
processes on request; plait's fds travel inside the messages themselves (``DupFd``),
so there is nothing to serve and ``stop`` has nothing to stop.
"""

from plait.ipc.reduction import DupFd
from plait.ipc.reduction import stop_sharing as stop

__all__ = ["stop", "DupFd"]
