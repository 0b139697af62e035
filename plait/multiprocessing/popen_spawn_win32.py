"""Drop-in face of ``multiprocessing.popen_spawn_win32``: Windows only, as the standard
module is; plait runs on Linux (and other POSIX systems where cheap)."""

__all__ = ["Popen"]


class Popen:
    """Not offered: there is no Windows support in plait."""

    def __init__(self, process_obj: object) -> None:
        raise NotImplementedError(
            "plait does not run on Windows; on POSIX use popen_spawn_posix.Popen"
        )
