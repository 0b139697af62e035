"""Drop-in face of ``multiprocessing.popen_fork``: ``Popen`` is plait's handle of a child
started by fork (``pid``, ``sentinel``, ``poll``, ``wait``, ``terminate``, ``kill``,
``close``); the code lives in ``plait.process.fork``."""

from plait.process.fork import ForkChild as Popen

__all__ = ["Popen"]
