"""Seeing inside a running kernel: ``ps()`` lists its tasks.

For each task: its id, name, state (``READY``, ``RUNNING``, ``READ_WAIT``, ``SLEEP``,
``QUEUE_GET``, ``THREAD_WAIT``, ... — the name of the trap it waits in) and where it waits:
the innermost line of the task's own code (frames inside ``plait.coro`` are skipped). The
other half of seeing inside is ``run(main, slow_step=0.05)``, which warns
(:class:`SlowStepWarning`) when one step of a task keeps the kernel busy longer.
"""

from __future__ import annotations

from typing import NamedTuple

from . import traps
from .kernel import where

__all__ = ["TaskInfo", "format_ps", "ps"]


class TaskInfo(NamedTuple):
    id: int
    name: str
    state: str
    daemon: bool
    where: str


def ps() -> list[TaskInfo]:
    """The live tasks of the kernel running in this thread, oldest first. Never blocks."""
    k = traps.kernel()
    return [
        TaskInfo(t.id, t.name, t.state, t.daemon, where(t))
        for t in sorted(k.tasks.values(), key=lambda t: t.id)
    ]


def format_ps(tasks: list[TaskInfo] | None = None) -> str:
    """``ps()`` as a table, one task a line."""
    rows = ps() if tasks is None else tasks
    lines = [f"{'id':>5} {'state':<16} {'name':<28} where"]
    for t in rows:
        lines.append(f"{t.id:>5} {t.state:<16} {t.name[:28]:<28} {t.where}")
    return "\n".join(lines)
