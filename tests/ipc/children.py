"""Run a function in a real child process for the length of a ``with`` block."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import plait.process


@contextlib.contextmanager
def child(target: Callable[..., object], *args: object) -> Iterator[plait.process.Process]:
    """Start ``target(*args)`` in a forked plait ``Process``; join it (kill after 10 s)."""
    process = plait.process.get_context("fork").Process(target=target, args=args)
    process.start()
    try:
        yield process
    finally:
        process.join(10)
        if process.exitcode is None:
            process.kill()
            process.join(10)
