"""The errors of cluster backends: each names the backend, the address or the option.

``UnknownBackendError`` (a ``ValueError``): ``backend=`` names no backend plait has.
``BackendNotInstalledError`` (an ``ImportError``): the engine of a backend is not
installed; the message names the extra to install (``pip install 'plait[dask]'``).
``UnsupportedOptionError`` (a ``ValueError``): an option of ``Pool`` that the backend
cannot honour (``maxtasksperchild`` on Dask: its workers are not ours to retire).
``SchedulerUnreachableError`` (a ``ConnectionError``): nothing answered at the address
within the connect timeout. ``RemoteWorkerLostError`` is the pool's ``WorkerLostError``
for a worker on a cluster: the engine retried the task and every attempt lost its
worker; it carries the worker's address (and pid when the engine knows it).
"""

from __future__ import annotations

from plait._core.errors import ProcessError
from plait.pool.errors import WorkerLostError

__all__ = [
    "BackendNotInstalledError",
    "RemoteWorkerLostError",
    "SchedulerUnreachableError",
    "UnknownBackendError",
    "UnsupportedOptionError",
]


class UnknownBackendError(ValueError):
    """``backend=`` is not one of the backends plait has (``known`` lists them)."""

    def __init__(self, name: object, known: tuple[str, ...]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"unknown pool backend {name!r}; the backends are {', '.join(known)}")

    def __reduce__(self):
        return type(self), (self.name, self.known)


class BackendNotInstalledError(ImportError):
    """The package a backend runs on is missing; ``extra`` is what to install."""

    def __init__(self, backend: str, package: str, extra: str) -> None:
        self.backend = backend
        self.package = package
        self.extra = extra
        super().__init__(
            f"the {backend!r} pool backend needs the {package!r} package, which is not "
            f"installed: pip install 'plait[{extra}]'",
            name=package,
        )

    def __reduce__(self):
        return type(self), (self.backend, self.package, self.extra)


class UnsupportedOptionError(ValueError):
    """An option the backend cannot honour; ``option`` names it, the message says why."""

    def __init__(self, backend: str, option: str, why: str) -> None:
        self.backend = backend
        self.option = option
        self.why = why
        super().__init__(f"the {backend!r} pool backend cannot honour {option}: {why}")

    def __reduce__(self):
        return type(self), (self.backend, self.option, self.why)


class SchedulerUnreachableError(ConnectionError):
    """Nothing answered at ``address`` within ``timeout`` seconds."""

    def __init__(self, backend: str, address: str, timeout: float, reason: str) -> None:
        self.backend = backend
        self.address = address
        self.timeout = timeout
        self.reason = reason
        super().__init__(
            f"cannot reach the {backend} scheduler at {address!r} within {timeout} s: {reason}"
        )

    def __reduce__(self):
        return type(self), (self.backend, self.address, self.timeout, self.reason)


class RemoteWorkerLostError(WorkerLostError):
    """Every attempt at the task lost its cluster worker (the engine's retries included).

    ``address`` is the last worker's address, ``pid`` its pid or None; ``exitcode`` and
    ``signal`` are None: a cluster does not tell how its workers ended.
    """

    def __init__(self, address: str, pid: int | None, detail: str) -> None:
        self.address = address
        self.pid = pid
        self.exitcode = None
        self.signal = None
        self.detail = detail
        who = f"worker {address}" if pid is None else f"worker {address} (pid {pid})"
        ProcessError.__init__(self, f"{who} died while running the task: {detail}")

    def __reduce__(self):
        return type(self), (self.address, self.pid, self.detail)
