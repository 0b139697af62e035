"""Objects of the standard ``multiprocessing`` inside plait's processes.

A program that moves to plait may still hold objects made by the standard module (a
``multiprocessing.Lock``, a queue a library made) and pass them to a plait ``Process``.
Those objects rely on three services of the standard process machinery, which plait's
processes give them whenever the standard module is loaded (and cost nothing when not):

- **a new child resets them**: the standard queue registers an after-fork callback that
  gives the child fresh locks and no feeder thread; ``child_started`` runs the standard
  after-fork callbacks in a plait child and forgets the parent's standard finalizers.
- **a leaving child flushes them**: items a child put on a standard queue sit in a
  feeder thread's buffer until a finalizer joins that thread; ``run_finalizers`` runs the
  standard finalizers beside plait's when a plait child exits (in a program plait did
  not start, the standard module's own exit hook runs them).
- **pickling for a new child is allowed**: the standard objects refuse to be pickled
  unless the standard module is starting a child (``assert_spawning``), and pickle their
  fds through the popen object of that child. ``spawning()`` stands for that popen while
  plait pickles a child's arguments under spawn and forkserver: the fds travel as plait's
  ``DupFd``, and the standard module's own reducers (connections, sockets), registered
  with its ``ForkingPickler`` rather than ``copyreg``, are applied.

Every process imports this module with ``plait.process.process`` (it imports nothing
itself): importing it in each forked child instead would make every fork-and-join pay
for copy-on-write faults in the import machinery.

What still fails, fails with the standard module's own message, which names both sides:
a lock of the standard ``fork`` context cannot go to a spawned child ("A SemLock created in
a fork context is being shared with a process in a spawn context").
"""

from __future__ import annotations

import sys

# Annotations only: importing typing would cost every child ~10 ms (see spawn).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["child_started", "run_finalizers", "spawning", "standard_reducers"]


def child_started() -> None:
    """In a new plait child: reset the standard objects inherited from the parent."""
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        util._finalizer_registry.clear()
        util._run_after_forkers()


def run_finalizers(minpriority: int | None = None) -> None:
    """Run the standard finalizers (``>= minpriority`` if given), as plait's own run."""
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        util._run_finalizers(minpriority)


class _SpawningPopen:
    """What the standard objects ask of the popen of a child being started."""

    @staticmethod
    def duplicate_for_child(fd: int) -> int:
        return fd

    @staticmethod
    def DupFd(fd: int) -> object:  # noqa: N802 - the standard popen's name
        from plait._core.fdpass import DupFd  # noqa: PLC0415 - parents only

        return DupFd(fd)


def standard_reducers() -> dict[type, Any]:
    """The reducers registered with the standard ``ForkingPickler`` (empty if unloaded)."""
    reduction = sys.modules.get("multiprocessing.reduction")
    return {} if reduction is None else reduction.ForkingPickler._extra_reducers


class spawning:  # noqa: N801 - used as ``with spawning():``, like a function
    """While active (in this thread), standard objects agree to be pickled for a child."""

    def __enter__(self) -> None:
        context = sys.modules.get("multiprocessing.context")
        self._context = context
        if context is not None:
            self._previous = context.get_spawning_popen()
            context.set_spawning_popen(_SpawningPopen())

    def __exit__(self, *exc: object) -> None:
        if self._context is not None:
            self._context.set_spawning_popen(self._previous)
