"""The interpreter's thread state, and the module type that lets the face assign it.

Theory of operation
-------------------
A process has one set of threads and one registry of them. plait's ``Thread`` is a
``threading.Thread`` (see ``thread``): the interpreter's bootstrap starts it, registers it
in the standard module's tables, reports its uncaught exception through
``threading.excepthook``, and joins it at exit from ``threading._shutdown``, which the
interpreter calls by name. That machinery looks its collaborators up *at run time* in the
globals of the standard ``threading`` module: the hook, the function that makes the OS
thread, the counter that numbers default names, the registry's dicts and sets.

A face holding copies of those names would be dead weight: ``plait.threading.excepthook =
hook`` would bind a name nothing reads, and the program would silently keep the old hook.
So the face is an instance of ``ThreadingModule``, a module type whose properties are views
of those globals: reading one returns the interpreter's current value, assigning it
assigns the interpreter's (for every thread of the process, as the standard module does),
and deleting it puts back the interpreter's default. The names are listed once, in
``SHARED``; nothing else of the face goes through a property, so looking up ``Lock`` or
``Queue`` on a face costs what it costs on any module.

The registry's private names (``_active``, ``_limbo``, ``_dangling`` ...) are in the
list because programs and debuggers read them to find threads, and they only mean
something if they are the live objects. They carry no promise beyond the standard
library's: they are whatever this interpreter's ``threading`` has, so the list follows
the running version (3.13 starts threads with ``_start_joinable_thread`` and keeps the
handles of non-daemon threads in ``_thread``, where 3.10-3.12 have ``_start_new_thread``
and ``_shutdown_locks``).
"""

from __future__ import annotations

import _thread
import sys
import threading
import types
from typing import Any

__all__ = ["SHARED", "ThreadingModule"]

#: Names the standard thread machinery reads from its module's globals while it runs,
#: with what each one is. The face serves them as views of that module.
SHARED: dict[str, str] = {
    "excepthook": "called with ExceptHookArgs when a thread's run() raises",
    "_trace_hook": "the function settrace() gives each thread started afterwards",
    "_profile_hook": "the function setprofile() gives each thread started afterwards",
    "_counter": "numbers the default names Thread-N",
    "_active": "ident -> Thread of every running thread",
    "_limbo": "threads whose start() has not yet reached the new thread",
    "_active_limbo_lock": "guards _active and _limbo",
    "_dangling": "weak set of every Thread object not yet collected",
    "_DummyThread": "what current_thread() returns in a thread threading did not start",
    "_MainThread": "the class of main_thread()",
    "_register_atexit": "runs a function at exit, before non-daemon threads are joined",
    "_shutdown": "the exit sequence the interpreter calls",
}
if sys.version_info >= (3, 13):
    # 3.13 makes threads with joinable handles; the handles of non-daemon threads are kept
    # by _thread itself, which threading._shutdown asks to wait for them.
    SHARED["_start_joinable_thread"] = "makes the OS thread and its handle for Thread.start()"
    SHARED["_thread_shutdown"] = "waits at exit for the non-daemon threads' handles"
else:
    SHARED["_start_new_thread"] = "makes the OS thread for Thread.start()"
    SHARED["_shutdown_locks"] = "locks of the non-daemon threads the exit waits for"
    SHARED["_shutdown_locks_lock"] = "guards _shutdown_locks"

# What ``del face.name`` restores: the interpreter's defaults, not whatever a test or a
# library had installed at the moment plait was imported.
_DEFAULTS: dict[str, Any] = {name: getattr(threading, name) for name in SHARED}
_DEFAULTS.update(excepthook=_thread._excepthook, _trace_hook=None, _profile_hook=None)


def _view(name: str) -> property:
    def get(_module: types.ModuleType) -> Any:
        return getattr(threading, name)

    def set_(_module: types.ModuleType, value: Any) -> None:
        setattr(threading, name, value)

    def delete(_module: types.ModuleType) -> None:
        setattr(threading, name, _DEFAULTS[name])

    return property(get, set_, delete, doc=f"The interpreter's threading.{name}: {SHARED[name]}.")


class ThreadingModule(types.ModuleType):
    """The type of ``plait.threading``: a module whose ``SHARED`` names are live views."""

    def __dir__(self) -> list[str]:
        return sorted(set(self.__dict__) | set(SHARED))


for _name in SHARED:
    setattr(ThreadingModule, _name, _view(_name))
del _name
