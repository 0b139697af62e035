"""Named OS resources a program asks to have removed if it leaks them.

``multiprocessing`` creates named POSIX shared memory (``/dev/shm/psm_*``) and named
semaphores, which outlive every process that uses them unless someone unlinks them; its
resource tracker is a separate process that unlinks what is still registered when the
last user is gone. plait creates no named resource: its shared memory is memfds and its
locks are futex words inside them, which the kernel frees with their last fd or mapping,
also after ``kill -9``. So none of plait's own objects is ever registered here.

What ``register(name, rtype)`` means on plait: a name created by other code (a
``/dev/shm`` segment of the standard ``SharedMemory``, a named semaphore, a folder) that
this process wants removed if it still exists when the process exits, with a
``UserWarning`` that it leaked, as the standard tracker warns. ``unregister`` forgets it
(the owner removed it). Names registered in a process are that process's own: a forked
child does not remove its parent's. The difference from ``multiprocessing``: there is no
tracker process, so a process killed by SIGKILL leaves its registered names behind;
``ensure_running`` has nothing to start and ``getfd`` has no pipe to give.
"""

from __future__ import annotations

import os
import shutil
import threading
import warnings

from plait.process import hooks

__all__ = ["ensure_running", "register", "unregister", "getfd"]


def _unlink_shared_memory(name: str) -> None:
    os.unlink(os.path.join("/dev/shm", name.lstrip("/")))


def _unlink_semaphore(name: str) -> None:
    os.unlink(os.path.join("/dev/shm", "sem." + name.lstrip("/")))


_CLEANUP_FUNCS = {
    "noop": lambda name: None,
    "shared_memory": _unlink_shared_memory,
    "semaphore": _unlink_semaphore,
    "folder": shutil.rmtree,
}

_lock = threading.Lock()
_registered: dict[str, set[str]] = {rtype: set() for rtype in _CLEANUP_FUNCS}
_owner_pid: int | None = None


def _check(name: str, rtype: str) -> None:
    if rtype not in _CLEANUP_FUNCS:
        raise ValueError(
            f"Cannot register {name} for automatic cleanup: unknown resource type {rtype}"
        )
    # multiprocessing's limit (a message to its tracker fits one atomic pipe write):
    # kept, so a name accepted here is accepted there.
    if "\n" in name or len(f"REGISTER:{name}:{rtype}\n") > 512:
        raise ValueError("msg too long")


def ensure_running() -> None:
    """Nothing to start: plait tracks registered names inside each process."""


def getfd() -> None:
    """Not offered: there is no tracker process, hence no pipe to it."""
    raise NotImplementedError(
        "plait has no resource tracker process; register()ed names are removed at this "
        "process's exit"
    )


def register(name: str, rtype: str) -> None:
    """Remove ``name`` (of type ``rtype``) at this process's exit if it still exists.

    ``rtype`` is ``"shared_memory"``, ``"semaphore"``, ``"folder"`` or ``"noop"``;
    raises ``ValueError`` for another.
    """
    global _owner_pid
    _check(name, rtype)
    with _lock:
        if _owner_pid != os.getpid():  # first use here, or a forked child: start afresh
            for names in _registered.values():
                names.clear()
            _owner_pid = os.getpid()
            hooks.Finalize(None, _cleanup, exitpriority=-50)
        _registered[rtype].add(name)


def unregister(name: str, rtype: str) -> None:
    """Forget ``name``: its owner removed it. Unknown names are ignored."""
    _check(name, rtype)
    with _lock:
        if _owner_pid == os.getpid():
            _registered[rtype].discard(name)


def _cleanup() -> None:
    with _lock:
        leaked = {rtype: sorted(names) for rtype, names in _registered.items() if names}
        for names in _registered.values():
            names.clear()
    for rtype, names in leaked.items():
        if rtype != "noop":
            warnings.warn(
                f"resource_tracker: There appear to be {len(names)} leaked {rtype} "
                "objects to clean up at shutdown",
                UserWarning,
                stacklevel=1,
            )
        for name in names:
            try:
                _CLEANUP_FUNCS[rtype](name)
            except OSError as e:
                warnings.warn(f"resource_tracker: {name!r}: {e}", UserWarning, stacklevel=1)
