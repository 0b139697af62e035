"""Drop-in face of ``multiprocessing.reduction``; the code lives in ``plait.ipc.reduction``."""

from plait.ipc.reduction import HAVE_SEND_HANDLE as HAVE_SEND_HANDLE
from plait.ipc.reduction import (
    DupFd,
    ForkingPickler,
    dump,
    recv_handle,
    recvfds,
    register,
    send_handle,
    sendfds,
)

__all__ = [
    "send_handle",
    "recv_handle",
    "ForkingPickler",
    "register",
    "dump",
    "DupFd",
    "sendfds",
    "recvfds",
]
