"""The ``multiprocessing`` API on threads: what ``multiprocessing.dummy`` is.

A program written against ``multiprocessing`` switches to threads by importing
``multiprocessing.dummy`` instead: ``Process`` is a thread, the queues and locks are the
thread ones, ``Pipe`` hands objects between threads (``dummy_connection``), ``Value`` and
``Array`` are plain objects, and ``Manager()`` hands out the same things, since every
thread already shares them. The thread pool stands in a layer above this one
(``plait.pool.ThreadPool``): ``Pool`` names it as a string and imports it on first call.

Theory of operation
-------------------
``DummyProcess`` is a plait ``Thread`` (so ``result()`` gives its return value or
exception) with the bits of ``multiprocessing.Process`` that mean something for a thread:
``exitcode`` is ``None`` until the thread has run and ``0`` after (a thread has no exit
status; ``result()`` re-raises what it raised), and each thread remembers the processes
it started in ``_children``, a weak dictionary, so ``active_children()`` lists the ones
still running and forgets the rest. Only a thread can start its own children (``start``
checks it), so each ``_children`` has one writer and needs no lock. ``current_process()``
is the interpreter's current thread, the object ``threading`` knows: the main thread
included, whose ``_children`` exists from import on, as in the standard module.
"""

from __future__ import annotations

import array
import importlib
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from plait.threads.dummy_connection import Pipe
from plait.threads.queues import Queue
from plait.threads.sync import (
    Barrier,
    BoundedSemaphore,
    Condition,
    Event,
    Lock,
    RLock,
    Semaphore,
)
from plait.threads.thread import Thread, current_thread

__all__ = [
    "Array",
    "DummyManager",
    "DummyProcess",
    "JoinableQueue",
    "Manager",
    "Namespace",
    "Process",
    "Value",
    "active_children",
    "current_process",
    "freeze_support",
    "shutdown",
]

current_process = current_thread
JoinableQueue = Queue  # plait's thread Queue has task_done() and join()


def _children_of(thread: Any) -> weakref.WeakKeyDictionary:
    """The processes ``thread`` started, made on first use."""
    try:
        return thread._children
    except AttributeError:
        children = thread._children = weakref.WeakKeyDictionary()
        return children


_children_of(current_process())  # the thread importing this, as the standard module does


class DummyProcess(Thread):
    """A ``multiprocessing.Process`` that is a thread of this process.

    Same constructor as ``Process``; ``start``, ``join(timeout)``, ``is_alive``, ``name``,
    ``daemon`` are the thread's. ``exitcode`` is ``None`` before the thread ends, ``0``
    after. ``start`` raises ``RuntimeError`` in any thread but the one that made it.

    >>> p = DummyProcess(target=print, args=("hi",)); p.start(); p.join(5)
    hi
    >>> p.exitcode
    0
    """

    def __init__(
        self,
        group: None = None,
        target: Callable[..., object] | None = None,
        name: str | None = None,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        daemon: bool | None = None,
    ) -> None:
        super().__init__(group, target, name, args, kwargs, daemon=daemon)
        self._children = weakref.WeakKeyDictionary()
        self._parent = current_process()

    def start(self) -> None:
        """Start the thread (and list it in its parent's ``active_children()``)."""
        parent = self._parent
        if parent is not current_process():
            raise RuntimeError(
                f"Parent is {parent!r} but current_process is {current_process()!r}:"
                " only the thread that made a DummyProcess may start it"
            )
        _children_of(parent)[self] = None
        super().start()

    @property
    def exitcode(self) -> int | None:
        """``0`` once the thread has run to its end, ``None`` before (never started too)."""
        if self._started.is_set() and not self.is_alive():
            return 0
        return None


Process = DummyProcess


def active_children() -> list[DummyProcess]:
    """The processes the calling thread started that are still running. Never blocks."""
    children = getattr(current_process(), "_children", None)
    if not children:
        return []
    for child in list(children):
        if not child.is_alive():
            children.pop(child, None)
    return list(children)


def freeze_support() -> None:
    """Nothing to do for threads (as on every platform but frozen Windows programs)."""


def shutdown() -> None:
    """Nothing to stop: a thread-backed manager has no server."""


class Namespace:
    """An object whose attributes are its keyword arguments: ``Namespace(x=1).x == 1``.

    ``repr`` lists the attributes whose names do not start with ``_``, sorted.
    """

    def __init__(self, /, **kwds: Any) -> None:
        self.__dict__.update(kwds)

    def __repr__(self) -> str:
        shown = sorted(f"{k}={v!r}" for k, v in self.__dict__.items() if not k.startswith("_"))
        return f"{type(self).__name__}({', '.join(shown)})"


class Value:
    """A value shared by threads: ``value`` reads and sets it.

    ``get_lock()`` is the lock that makes a read-modify-write safe, as for a
    ``multiprocessing.Value``: ``with v.get_lock(): v.value += 1``. ``lock`` is that lock
    when it is a lock object; otherwise (True, False) a new ``RLock``.
    """

    def __init__(self, typecode: Any, value: Any, lock: Any = True) -> None:
        self._typecode = typecode
        self._value = value
        self._lock = RLock() if isinstance(lock, bool) else lock

    @property
    def value(self) -> Any:
        return self._value

    @value.setter
    def value(self, value: Any) -> None:
        self._value = value

    def get_lock(self) -> Any:
        """The lock to hold around a read-modify-write of ``value``."""
        return self._lock

    def __repr__(self) -> str:
        return f"<{type(self).__name__}({self._typecode!r}, {self._value!r})>"


def Array(typecode: str, sequence: Iterable[Any] | int, lock: Any = True) -> array.array:  # noqa: N802
    """An ``array.array`` of ``typecode`` holding ``sequence`` (``n`` zeros for an int).

    ``lock`` is accepted for ``multiprocessing.Array``'s signature; the array is a plain
    one, shared by threads as every object is.
    """
    if isinstance(sequence, int):
        return array.array(typecode, bytes(sequence * array.array(typecode).itemsize))
    return array.array(typecode, sequence)


POOL_HOME = "plait.pool.pool:ThreadPool"


def Pool(  # noqa: N802 - the standard name
    processes: int | None = None,
    initializer: Callable[..., object] | None = None,
    initargs: Iterable[Any] = (),
) -> Any:
    """plait's ``ThreadPool``, as the standard ``multiprocessing.dummy.Pool`` gives its own.

    The pool lives in a layer above this one (``plait.pool``): ``POOL_HOME`` names it as a
    string and it is imported on first call, so this layer never imports it at load time.
    """
    module, _, name = POOL_HOME.partition(":")
    return getattr(importlib.import_module(module), name)(processes, initializer, initargs)


class DummyManager:
    """What ``Manager()`` returns: ``multiprocessing.Manager``'s factories, on threads.

    No server is involved: ``dict()``, ``Queue()``, ``Lock()`` ... are the ordinary thread
    objects, which every thread already shares. ``start``, ``shutdown`` and the ``with``
    block are accepted and do nothing.
    """

    Array = staticmethod(Array)
    Barrier = staticmethod(Barrier)
    BoundedSemaphore = staticmethod(BoundedSemaphore)
    Condition = staticmethod(Condition)
    Event = staticmethod(Event)
    JoinableQueue = staticmethod(JoinableQueue)
    Lock = staticmethod(Lock)
    Namespace = staticmethod(Namespace)
    Pipe = staticmethod(Pipe)
    Pool = staticmethod(Pool)
    Queue = staticmethod(Queue)
    RLock = staticmethod(RLock)
    Semaphore = staticmethod(Semaphore)
    Value = staticmethod(Value)
    dict = staticmethod(dict)
    list = staticmethod(list)

    def start(self) -> None:
        """Nothing to start."""

    def shutdown(self) -> None:
        """Nothing to stop."""

    def join(self, timeout: float | None = None) -> None:
        """Nothing to wait for."""

    def __enter__(self) -> DummyManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def Manager() -> DummyManager:  # noqa: N802 - the standard name
    """A manager whose objects are the thread ones (see ``DummyManager``)."""
    return DummyManager()
