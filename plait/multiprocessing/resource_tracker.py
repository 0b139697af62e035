"""Drop-in face of ``multiprocessing.resource_tracker``; the code (and what registering
means on plait, whose own shared memory needs no tracking) lives in
``plait.process.resource_tracker``."""

from plait.process.resource_tracker import ensure_running, getfd, register, unregister

__all__ = ["ensure_running", "register", "unregister", "getfd"]
