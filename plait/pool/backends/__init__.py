"""Pool backends: where a ``Pool``'s tasks run, chosen by ``backend=``.

``"local"`` is the pool's own engine (``plait.pool.scheduler``: worker processes of
this machine). The cluster backends run the same jobs on an engine a cluster already
runs, never on a scheduler of ours:

- ``"dask"``: Dask distributed (``dask_runner``), extra ``plait[dask]``;
- ``"ray"``: Ray (``ray_runner``), extra ``plait[ray]``.

``make_engine`` checks the name and the options, imports the engine's package only
then (importing plait never imports Dask or Ray) and returns a ``RemoteEngine``
(``remote``), which ``Pool`` drives exactly as it drives the local engine.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from typing import Any

from plait.pool.backends.errors import (
    BackendNotInstalledError,
    RemoteWorkerLostError,
    SchedulerUnreachableError,
    UnknownBackendError,
    UnsupportedOptionError,
)
from plait.pool.backends.remote import RemoteEngine

__all__ = [
    "BACKENDS",
    "BackendNotInstalledError",
    "RemoteWorkerLostError",
    "SchedulerUnreachableError",
    "UnknownBackendError",
    "UnsupportedOptionError",
    "check_backend",
    "make_engine",
]

# name -> (runner module, its runner class, the package it needs, the extra installing it)
BACKENDS: dict[str, tuple[str, str, str, str] | None] = {
    "local": None,
    "dask": ("plait.pool.backends.dask_runner", "DaskRunner", "distributed", "dask"),
    "ray": ("plait.pool.backends.ray_runner", "RayRunner", "ray", "ray"),
}


def check_backend(backend: object) -> str:
    """Return ``backend`` if plait has it; raise ``UnknownBackendError``/``TypeError``."""
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, not {type(backend).__name__}")
    if backend not in BACKENDS:
        raise UnknownBackendError(backend, tuple(BACKENDS))
    return backend


def make_engine(
    backend: str,
    address: Any = None,
    processes: int | None = None,
    initializer: Callable[..., object] | None = None,
    initargs: tuple = (),
    maxtasksperchild: int | None = None,
    context: Any = None,
    options: Mapping[str, Any] | None = None,
):
    """The engine of a cluster backend, connected (or its local cluster started).

    Blocks while it connects (at most the ``connect_timeout`` option, default 10 s) or
    starts a local cluster. Raises ``UnknownBackendError``, ``BackendNotInstalledError``
    (naming the extra), ``UnsupportedOptionError`` for an option the backend cannot
    honour, ``SchedulerUnreachableError`` when nothing answers at ``address``.
    """
    check_backend(backend)
    spec = BACKENDS[backend]
    if spec is None:
        raise ValueError("the local backend has no cluster engine; Pool() runs it itself")
    module_name, class_name, package, extra = spec
    if maxtasksperchild is not None:
        raise UnsupportedOptionError(
            backend, "maxtasksperchild", f"the {backend} cluster owns its workers' lifetimes"
        )
    if context is not None:
        raise UnsupportedOptionError(
            backend, "context", f"the {backend} cluster chooses how its workers start"
        )
    if processes is not None and processes < 1:
        raise ValueError("Number of processes must be at least 1")
    if importlib.util.find_spec(package) is None:
        raise BackendNotInstalledError(backend, package, extra)
    runner_module = importlib.import_module(module_name)
    merged = dict(runner_module.OPTIONS)
    for key, value in dict(options or {}).items():
        if key not in merged:
            raise UnsupportedOptionError(
                backend, f"option {key!r}", f"its options are {', '.join(sorted(merged))}"
            )
        merged[key] = value
    runner = getattr(runner_module, class_name)
    handle = runner(address, processes, initializer, tuple(initargs), merged)
    try:
        return RemoteEngine(handle, processes)
    except BaseException:
        handle.close()
        raise
