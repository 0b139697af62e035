"""Drop-in face of ``multiprocessing.popen_spawn_posix``: ``Popen`` is plait's handle of a child
started by spawn (``pid``, ``sentinel``, ``poll``, ``wait``, ``terminate``, ``kill``,
``close``); the code lives in ``plait.process.spawn``."""

from plait.process.spawn import SpawnChild as Popen

__all__ = ["Popen"]
