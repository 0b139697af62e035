"""What runs at a process's boundaries: finalizers at exit, callbacks in a forked child.

This is the machinery of ``multiprocessing.util`` that programs and libraries use to
tie a resource's life to a process's, on plait's processes:

- ``Finalize(obj, callback, exitpriority=)`` calls ``callback`` once: when ``obj`` is
  garbage collected, when the finalizer is called, or when the process exits (only
  finalizers with an ``exitpriority``; higher priorities first, later registrations
  first within a priority). At exit, those with ``exitpriority >= 0`` run before the
  process terminates its daemon children and joins the others, the rest after.
- ``register_after_fork(obj, func)`` calls ``func(obj)`` in every child started from
  this process while ``obj`` lives (the child of ``fork`` inherits the registry; a
  spawned child starts empty, so only objects rebuilt there register).
- ``ForkAwareThreadLock`` and ``ForkAwareLocal`` use it to come fresh in each child.

The registries cost nothing until this module is imported: ``plait.process.process``
consults it through ``sys.modules`` when a child starts and when a process exits, so a
program that never uses it never loads it. Importing it registers the exit hook.
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from plait.process import log, process

__all__ = [
    "Finalize",
    "register_after_fork",
    "is_exiting",
    "get_temp_dir",
    "ForkAwareThreadLock",
    "ForkAwareLocal",
    "close_all_fds_except",
    "close_fds",
    "run_finalizers",
    "run_after_forkers",
    "cleanup",
]

_afterfork_registry: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_afterfork_counter = itertools.count()

_finalizer_registry: dict[tuple[int | None, int], Finalize] = {}
_finalizer_counter = itertools.count()


def register_after_fork(obj: object, func: Callable[[Any], object]) -> None:
    """Call ``func(obj)`` in each child this process starts, while ``obj`` is alive."""
    _afterfork_registry[(next(_afterfork_counter), id(obj), func)] = obj


def run_after_forkers() -> None:
    """In a new child: call the registered after-fork callbacks, oldest first."""
    items = sorted(_afterfork_registry.items(), key=lambda item: item[0][0])
    for (_, _, func), obj in items:
        try:
            func(obj)
        except Exception as e:
            log.info("after forker raised exception %s", e)


class Finalize:
    """Call ``callback(*args, **kwargs)`` once: when ``obj`` dies, when called, or at exit.

    Without ``obj``, ``exitpriority`` is required (the callback runs only at exit or
    when called). Raises ``TypeError`` for a non-integer ``exitpriority``.
    """

    def __init__(
        self,
        obj: object,
        callback: Callable[..., object],
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        exitpriority: int | None = None,
    ) -> None:
        if exitpriority is not None and not isinstance(exitpriority, int):
            raise TypeError(
                f"Exitpriority ({exitpriority!r}) must be None or int, "
                f"not {type(exitpriority)!s}"
            )
        if obj is not None:
            self._weakref = weakref.ref(obj, self)
        elif exitpriority is None:
            raise ValueError("Without object, exitpriority cannot be None")
        self._callback = callback
        self._args = tuple(args)
        self._kwargs = dict(kwargs or {})
        self._key = (exitpriority, next(_finalizer_counter))
        self._pid = os.getpid()
        _finalizer_registry[self._key] = self

    def __call__(self, wr: object = None) -> Any:
        """Run the callback if it has not run yet (and only in the registering process)."""
        try:
            del _finalizer_registry[self._key]
        except KeyError:
            log.sub_debug("finalizer no longer registered")
            return None
        if self._pid != os.getpid():
            log.sub_debug("finalizer ignored because different process")
            res = None
        else:
            log.sub_debug("finalizer calling %s with args %s and kwargs %s",
                          self._callback, self._args, self._kwargs)  # fmt: skip
            res = self._callback(*self._args, **self._kwargs)
        self._weakref = self._callback = self._args = self._kwargs = self._key = None
        return res

    def cancel(self) -> None:
        """Forget the finalizer: its callback will not run."""
        try:
            del _finalizer_registry[self._key]
        except KeyError:
            pass
        else:
            self._weakref = self._callback = self._args = self._kwargs = self._key = None

    def still_active(self) -> bool:
        """Whether the callback has not run (nor been cancelled) yet."""
        return self._key in _finalizer_registry

    def __repr__(self) -> str:
        obj = getattr(self, "_weakref", None)
        obj = obj() if obj is not None else None
        if self._callback is None:
            return "<Finalize object, dead>"
        text = f"<Finalize object, callback={getattr(self._callback, '__name__', self._callback)}"
        if self._args:
            text += f", args={self._args}"
        if self._kwargs:
            text += f", kwargs={self._kwargs}"
        if self._key[0] is not None:
            text += f", exitpriority={self._key[0]}"
        return text + ">"


def run_finalizers(minpriority: int | None = None) -> None:
    """Run the finalizers with an exit priority (``>= minpriority`` if given), highest
    first. Without ``minpriority`` the registry is emptied afterwards. A callback that
    raises prints its traceback; the others still run."""
    floor = float("-inf") if minpriority is None else minpriority
    # The registry may change while this runs (a GC run, another thread): list() of a
    # dict's keys is atomic, its items are not.
    keys = sorted(
        (key for key in list(_finalizer_registry) if key[0] is not None and key[0] >= floor),
        reverse=True,
    )
    for key in keys:
        finalizer = _finalizer_registry.get(key)
        if finalizer is not None:
            log.sub_debug("calling %s", finalizer)
            try:
                finalizer()
            except Exception:
                import traceback  # noqa: PLC0415 - only on failure

                traceback.print_exc()
    if minpriority is None:
        _finalizer_registry.clear()


def child_started() -> None:
    """In a new child: forget the parent's finalizers, run the after-fork callbacks."""
    _finalizer_registry.clear()
    run_after_forkers()


def is_exiting() -> bool:
    """Whether this process is shutting down (its exit hook has begun)."""
    return process._exiting


def get_temp_dir() -> str:
    """A temporary directory of this process, made on first call, removed at its exit."""
    config = process.current_process()._config
    tempdir = config.get("tempdir")
    if tempdir is None:
        import shutil  # noqa: PLC0415 - on first use
        import tempfile  # noqa: PLC0415

        tempdir = tempfile.mkdtemp(prefix="pymp-")
        log.info("created temp directory %s", tempdir)
        # A strong reference to rmtree: the finalizer may run late in shutdown.
        Finalize(None, _remove_temp_dir, args=(shutil.rmtree, tempdir), exitpriority=-100)
        config["tempdir"] = tempdir
    return tempdir


def _remove_temp_dir(rmtree: Callable[..., None], tempdir: str) -> None:
    rmtree(tempdir)
    config = process.current_process()._config
    if config.get("tempdir") == tempdir:
        config["tempdir"] = None


class ForkAwareThreadLock:
    """A thread lock that a forked child gets fresh (never held by a thread it lacks)."""

    def __init__(self) -> None:
        self._at_fork_reinit()
        register_after_fork(self, ForkAwareThreadLock._at_fork_reinit)

    def _at_fork_reinit(self) -> None:
        self._lock = threading.Lock()
        self.acquire = self._lock.acquire
        self.release = self._lock.release

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._lock.__exit__(*exc)


class ForkAwareLocal(threading.local):
    """Thread-local storage that a child starts empty."""

    def __init__(self) -> None:
        register_after_fork(self, lambda obj: obj.__dict__.clear())

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return type(self), ()


def close_all_fds_except(fds: Iterable[int]) -> None:
    """Close every fd of this process except ``fds``."""
    keep = sorted({*fds, -1, os.sysconf("SC_OPEN_MAX")})
    for low, high in zip(keep, keep[1:], strict=False):
        os.closerange(low + 1, high)


def close_fds(*fds: int) -> None:
    """Close each fd given."""
    for fd in fds:
        os.close(fd)


def cleanup() -> None:
    """Reap ended children, stop this process's fork server and run every finalizer:
    what ``multiprocessing``'s own test suite calls between modules."""
    process._cleanup()
    from plait.process import forkserver  # noqa: PLC0415 - on first use

    forkserver.stop_server()
    run_finalizers()


process._register_exit_hook()
