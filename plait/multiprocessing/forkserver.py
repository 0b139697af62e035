"""Drop-in face of ``multiprocessing.forkserver``; the code lives in
``plait.process.forkserver``."""

from plait.process.forkserver import ForkServer as ForkServer
from plait.process.forkserver import _forkserver as _forkserver
from plait.process.forkserver import (
    connect_to_new_process,
    ensure_running,
    get_inherited_fds,
    set_forkserver_preload,
)
from plait.process.forkserver import stop_server as stop_server

__all__ = [
    "ensure_running",
    "get_inherited_fds",
    "connect_to_new_process",
    "set_forkserver_preload",
]
