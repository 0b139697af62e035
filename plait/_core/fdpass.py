"""Passing file descriptors: SCM_RIGHTS messages, and fds inside pickles.

Theory of operation
-------------------
A Unix socket can carry open file descriptors beside its bytes (``SCM_RIGHTS``): the
kernel installs a new fd in the receiver that refers to the same open file. plait uses
that for two things: shared-memory segments (a ``memfd`` holding a large message) and
objects that own an fd (a ``Connection``) sent inside a pickle.

An object that owns an fd pickles it by calling ``reduce_fd(fd)`` from its
``__reduce__``. That only works while someone is collecting: the sender of a message
(or a process start method preparing a child's arguments) wraps ``dumps`` in
``with FdCollector() as fds:``; ``reduce_fd`` dups the fd into the collector and returns
its index, which is what goes into the pickle. The collector's ``fds`` then travel beside
the payload (``sendmsg`` with ``SCM_RIGHTS``, or inheritance by a spawned child), and
``close()`` drops the sender's dups once they are on their way. The receiver wraps
``loads`` in ``with FdSupply(fds):``; the object's rebuild function calls
``rebuild_fd(index)`` and owns the fd it gets. The supply closes every fd nobody took when
the block ends, so a payload that fails to unpickle leaks nothing.

Outside a collector ``reduce_fd`` raises ``PicklingError``: an fd number means
nothing in another process unless the fd itself travels with it.

The hook for start methods: while pickling a child's arguments under ``spawn``, do
``with FdCollector() as c: data = dumps(obj)``, give the child ``c.fds`` (``pass_fds``),
tell it their numbers, ``c.close()`` in the parent; in the child,
``with FdSupply(numbers): obj = loads(data)``.

State is per thread, so two threads pickling at once do not see each other's collectors.
"""

from __future__ import annotations

# The C modules, not ``pickle``/``socket``/``threading``: a spawned child that rebuilds
# its arguments imports this module and should not pay for ``re`` or ``enum``.
import array
import os
from _pickle import PicklingError, UnpicklingError
from _socket import CMSG_SPACE, SCM_RIGHTS, SOL_SOCKET
from _thread import _local
from collections.abc import Iterable

__all__ = [
    "MAX_FDS",
    "ANCILLARY_SIZE",
    "FdCollector",
    "FdSupply",
    "reduce_fd",
    "rebuild_fd",
    "rights",
    "fds_from_ancillary",
    "close_all",
    "DupFd",
    "collected",
    "drop_collected_since",
]

MAX_FDS = 128  # per message: half the kernel's SCM_MAX_FD (253); a plait queue owns 4
ANCILLARY_SIZE = CMSG_SPACE(MAX_FDS * array.array("i").itemsize)

_state = _local()


class FdCollector:
    """Collects dups of the fds that ``reduce_fd`` meets while it is active.

    Use as a context manager around ``dumps``; ``close()`` closes the dups.
    """

    def __init__(self) -> None:
        self.fds: list[int] = []
        self._outer: FdCollector | None = None

    def add(self, fd: int) -> int:
        """Dup ``fd`` into the collection; return its index there."""
        if len(self.fds) >= MAX_FDS:
            raise PicklingError(f"a message can carry at most {MAX_FDS} fds")
        self.fds.append(os.dup(fd))
        return len(self.fds) - 1

    def __enter__(self) -> FdCollector:
        self._outer = getattr(_state, "collector", None)
        _state.collector = self
        return self

    def __exit__(self, *exc) -> None:
        _state.collector = self._outer
        self._outer = None

    def close(self) -> None:
        """Close the collected dups (after they were sent or inherited)."""
        fds, self.fds = self.fds, []
        close_all(fds)


class FdSupply:
    """Hands received fds to ``rebuild_fd`` while active; closes those not taken."""

    def __init__(self, fds: Iterable[int]) -> None:
        self._fds: list[int | None] = list(fds)
        self._outer: FdSupply | None = None

    def take(self, index: int) -> int:
        """Give away the fd at ``index``; raise ``UnpicklingError`` if there is none."""
        if not 0 <= index < len(self._fds) or self._fds[index] is None:
            raise UnpicklingError(f"the message carries no fd number {index}")
        fd, self._fds[index] = self._fds[index], None
        return fd

    def __enter__(self) -> FdSupply:
        self._outer = getattr(_state, "supply", None)
        _state.supply = self
        return self

    def __exit__(self, *exc) -> None:
        _state.supply = self._outer
        self._outer = None
        fds, self._fds = self._fds, []
        close_all(fd for fd in fds if fd is not None)


def collected() -> int:
    """How many fds the active collector holds (0 when none is active)."""
    collector = getattr(_state, "collector", None)
    return 0 if collector is None else len(collector.fds)


def drop_collected_since(count: int) -> None:
    """Close and forget what the active collector took after its first ``count`` fds:
    the dups of a pickling attempt that failed and is about to be retried another way
    (else each attempt would add the same fds again)."""
    collector = getattr(_state, "collector", None)
    if collector is not None and len(collector.fds) > count:
        extra = collector.fds[count:]
        del collector.fds[count:]
        close_all(extra)


def reduce_fd(fd: int) -> int:
    """From a ``__reduce__``: register ``fd`` to travel with the pickle; return its index.

    Raises ``PicklingError`` when no ``FdCollector`` is active.
    """
    collector = getattr(_state, "collector", None)
    if collector is None:
        raise PicklingError(
            "an object owning a file descriptor can only be pickled while its fd travels "
            "with it: sent through a plait Connection over a Unix socket (a child started "
            "by fork inherits it without pickling)"
        )
    return collector.add(fd)


def rebuild_fd(index: int) -> int:
    """From a rebuild function: take the received fd registered under ``index``.

    Raises ``UnpicklingError`` when no ``FdSupply`` is active or it lacks the fd.
    """
    supply = getattr(_state, "supply", None)
    if supply is None:
        raise UnpicklingError("no file descriptors arrived with this pickle")
    return supply.take(index)


def rights(fds: list[int]) -> list[tuple[int, int, bytes]]:
    """The ancillary data for ``sendmsg`` that sends ``fds``."""
    return [(SOL_SOCKET, SCM_RIGHTS, array.array("i", fds).tobytes())]


class DupFd:
    """A duplicate of ``fd`` that travels inside a pickle; ``detach()`` hands it over.

    Pickled, it goes through ``reduce_fd`` (so only while a collector is active) and
    arrives as a ``DupFd`` owning the received fd. The receiver must ``detach()`` it;
    one that is dropped closes its fd.
    """

    def __init__(self, fd: int) -> None:
        self._fd: int | None = os.dup(fd)

    def detach(self) -> int:
        """The fd, now the caller's to close. Raises ``ValueError`` if already detached."""
        fd, self._fd = self._fd, None
        if fd is None:
            raise ValueError("DupFd already detached")
        return fd

    def __reduce__(self):
        if self._fd is None:
            raise ValueError("DupFd already detached")
        return _rebuild_dupfd, (reduce_fd(self._fd),)

    def __del__(self) -> None:
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            os.close(fd)


def _rebuild_dupfd(index: int) -> DupFd:
    received = DupFd.__new__(DupFd)
    received._fd = rebuild_fd(index)
    return received


def fds_from_ancillary(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    """The fds installed in this process by a ``recvmsg``'s ancillary data."""
    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == SOL_SOCKET and kind == SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    return fds.tolist()


def close_all(fds: Iterable[int]) -> None:
    """Close every fd of ``fds``, ignoring those already closed."""
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
