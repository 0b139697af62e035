"""Drop-in face of ``multiprocessing.popen_forkserver``: ``Popen`` is plait's handle of a child
started by forkserver (``pid``, ``sentinel``, ``poll``, ``wait``, ``terminate``, ``kill``,
``close``); the code lives in ``plait.process.forkserver``."""

from plait.process.forkserver import ForkServerChild as Popen

__all__ = ["Popen"]
