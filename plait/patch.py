"""``plait.patch()``: plait's faces in place of the standard modules, for a whole program.

Most programs that start processes do not import ``multiprocessing`` themselves: a
library does, often before the program could change anything. ``patch()`` makes every
use of the standard modules, by any module, reach plait's faces instead:

- ``multiprocessing`` and every submodule (``multiprocessing.pool``, ``.context``,
  ``.dummy``, ``.dummy.connection``...) look like ``plait.multiprocessing`` and its
  submodules;
- ``concurrent.futures`` (with ``.process`` and ``.thread``) looks like ``plait.futures``,
  so ``ProcessPoolExecutor`` and ``ThreadPoolExecutor`` are plait's;
- opt-in, ``patch(threading=True, queue=True)``: ``threading`` and ``queue`` look like
  ``plait.threading`` and ``plait.queue``.

Theory of operation
-------------------
The standard module objects stay where they are, in ``sys.modules`` and in every module
that imported them, and their ``__dict__`` is never touched. ``patch()`` imports each
standard module of the list and sets its ``__class__`` to a ``ModuleType`` subclass whose
``__getattribute__`` serves each public name (not ``_private``, not a submodule) from the
matching face, imported on first use. Because it is the module object that changes, the
patch reaches ``import multiprocessing`` done later anywhere, ``import multiprocessing as
mp`` done earlier (``mp.Pool``, ``mp.get_context``, ``mp.Queue`` are plait's when read),
``from multiprocessing import Pool`` and ``from multiprocessing.pool import Pool`` executed
after the call, and a module attribute read at run time (``mp.pool.Pool``).

What it does not reach: a name already copied out of a standard module, as
``from multiprocessing import Pool`` executed *before* the call, keeps the object it
bound (patch before the library imports, or run the program with ``python -m plait run``);
``type(multiprocessing) is types.ModuleType`` becomes false (``isinstance`` holds; the
class pickles a module by name, as cloudpickle does for a plain module, which it
recognises by its exact type: a ``python -c`` program's functions that name
``multiprocessing`` still go to spawned children). A
standard public name the face does not have (a helper the standard module imported,
``multiprocessing.util.MAXFD``) stays the standard one; a name the face refuses raises the
face's error.

Who still sees the standard modules. The redirection looks at the module that reads the
attribute (its frame's ``__name__``) and serves the real standard attribute to:

- plait itself (``plait.*``): its layers subclass ``multiprocessing.context.BaseContext``,
  re-export the standard exception classes, and drive the standard module's private
  machinery for standard objects (``plait.process.interop``); a plait module imported
  lazily after ``patch()`` still gets the real ``multiprocessing.context``;
- the patched standard packages themselves (``multiprocessing.*``,
  ``concurrent.futures.*``, ``threading``, ``queue``): their code reads each other's
  attributes (``util.Finalize``, ``process.current_process``), so a standard object made
  before the call, or by the standard library, keeps running wholly standard code;
- for ``threading`` and ``queue`` only, the whole standard library (``logging``,
  ``asyncio``, ``concurrent.futures`` internals, the interpreter's shutdown): its locks
  must keep the standard fork and shutdown behaviour (``_at_fork_reinit``...). Third-party
  and user code get plait's.

Libraries built on the standard internals. Some libraries use the standard module's
private machinery rather than its interface; served plait's objects they would run half
on each, and fail or hang. The top-level packages of ``KEEP_STANDARD`` (joblib, loky) are
read as plait itself is, and a class defined outside plait that subclasses a class a
face serves in place of a standard one is examined as it is made
(``plait.patch_subclasses``): written against the standard implementation, it gets the
standard class back. One ``PatchWarning`` names each library.

``unpatch()`` restores each module's original class, hence every attribute exactly as it
was (nothing else changed). Objects made while patched are plait's own and do not
depend on the patch: they keep working after it.

This module is callable: ``plait.patch(...)`` (the package attribute is this module once
it is imported) is ``plait.patch.patch(...)``.

Children. A forked child inherits the patch. A spawned child, and each child of a fork
server, receive the parent's state in their preparation data
(``plait.process.spawn.child_preparers``) and call ``patch()`` (or ``unpatch()``, once the
parent unpatched) before they re-run ``__main__`` or unpickle anything, so a fork server
started before ``patch()`` still gives patched children; a patched child patches its own
children the same way. A child the *standard* module starts (possible only from the
standard library, see above) is not patched.

``PLAIT_PATCH``. The ``plait-patch.pth`` hook (see ``setup.py``) calls
``from_environment()`` in every interpreter started with the variable set.

``patch()`` and ``unpatch()`` hold one lock, so concurrent calls are serialized, and
each is idempotent: a second call changes nothing and reports nothing.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import types
from _thread import allocate_lock
from collections.abc import Iterator

from plait.patch_subclasses import PatchWarning, active, warn_once, watch
from plait.process.api import SUBMODULES

__all__ = [
    "KEEP_STANDARD",
    "PatchReport",
    "PatchWarning",
    "from_environment",
    "patch",
    "patched",
    "patched_modules",
    "unpatch",
]

ENVIRONMENT_VARIABLE = "PLAIT_PATCH"
_OPT_IN = ("threading", "queue")

_MULTIPROCESSING_SUBMODULES = (*SUBMODULES, "dummy.connection")

# Which standard modules each option patches: standard name -> face name.
_GROUPS: dict[str, dict[str, str]] = {
    "multiprocessing": {
        "multiprocessing": "plait.multiprocessing",
        **{
            f"multiprocessing.{sub}": f"plait.multiprocessing.{sub}"
            for sub in _MULTIPROCESSING_SUBMODULES
        },
    },
    "futures": {
        "concurrent.futures": "plait.futures",
        "concurrent.futures.process": "plait.futures.process",
        "concurrent.futures.thread": "plait.futures.thread",
    },
    "threading": {"threading": "plait.threading"},
    "queue": {"queue": "plait.queue"},
}

# Readers that get the real standard attributes (see the module docstring).
_OWN = frozenset(
    {
        "plait",
        "multiprocessing",
        "concurrent",
        "threading",
        "queue",
        # The import system: ``from m import name`` first asks it whether ``m`` has
        # ``name`` (or must import a submodule of that name); the reader then gets it.
        "_frozen_importlib",
        "_frozen_importlib_external",
        "importlib",
    }
)
_STANDARD_LIBRARY = _OWN | frozenset(sys.stdlib_module_names)

_lock = allocate_lock()
_patched: dict[str, tuple[types.ModuleType, type]] = {}  # name -> (module, original class)
_options: dict[str, bool] = {}  # the patch() arguments in force, for children
_environment_read: list[str] = []  # PLAIT_PATCH, once from_environment() has acted


class PatchReport(dict):
    """What one ``patch()`` or ``unpatch()`` call changed: each standard module's name
    -> the face that now serves it (``patch``) or that stopped serving it (``unpatch``).
    Empty when the call changed nothing."""

    def __repr__(self) -> str:
        return f"PatchReport({dict.__repr__(self)})"


def patch(*, threading: bool = False, queue: bool = False) -> PatchReport:
    """Serve ``multiprocessing`` and ``concurrent.futures`` (and, if asked, ``threading``
    and ``queue``) from plait's faces for the whole program and its children (see the
    module docstring); the modules this call patched."""
    groups = ["multiprocessing", "futures"]
    if threading:
        groups.append("threading")
    if queue:
        groups.append("queue")
    report = PatchReport()
    with _lock:
        for group in groups:
            for standard, face in _GROUPS[group].items():
                if standard in _patched:
                    continue
                try:
                    module = __import__(standard, fromlist=["_"])
                except ImportError:
                    continue  # popen_spawn_win32 off Windows: nothing to serve
                exempt = _STANDARD_LIBRARY if group in ("threading", "queue") else _OWN
                original = type(module)
                module.__class__ = _view_class(original, face, exempt)
                _patched[standard] = (module, original)
                report[standard] = face
                active[0] = True
            if group in ("threading", "queue"):
                _options[group] = True
        _register_with_children()
    return report


def unpatch() -> PatchReport:
    """Give every patched module back its standard attributes; what it restored.
    Objects made while patched keep working."""
    report = PatchReport()
    with _lock:
        for standard, (module, original) in reversed(list(_patched.items())):
            module.__class__ = original
            report[standard] = _face_of(standard)
        _patched.clear()
        active[0] = False
        _options.clear()
    return report


def patched_modules() -> list[str]:
    """The names of the standard modules plait's faces serve now."""
    with _lock:
        return sorted(_patched)


@contextlib.contextmanager
def patched(*, threading: bool = False, queue: bool = False) -> Iterator[PatchReport]:
    """``patch()`` for the ``with`` block: on leaving it, undo what this ``patch()`` did
    (modules patched before the block stay patched)."""
    report = patch(threading=threading, queue=queue)
    try:
        yield report
    finally:
        with _lock:
            for standard in reversed(list(report)):
                entry = _patched.pop(standard, None)
                active[0] = bool(_patched)
                if entry is not None:
                    module, original = entry
                    module.__class__ = original
            for group in ("threading", "queue"):
                if not any(name in _patched for name in _GROUPS[group]):
                    _options.pop(group, None)


def prepare_child(options: dict[str, bool] | bool) -> None:
    """In a spawned child or a fork server's child, before anything is unpickled: the
    parent's patch (``options``, the ``patch()`` arguments), or none (``False``)."""
    if options is False:
        unpatch()
    else:
        patch(**options)


def from_environment() -> PatchReport:
    """``patch()`` as the ``PLAIT_PATCH`` environment variable asks; what it patched.

    The ``plait-patch.pth`` hook that plait installs in site-packages calls this when the
    variable is set, so every interpreter started with it runs under ``patch()``: how to
    patch a program or a tool you cannot edit (a test runner, a CLI).

    - unset, empty or ``0``: nothing;
    - ``1`` (or ``multiprocessing``): ``patch()``;
    - a comma-separated list of the opt-in modules, ``threading``, ``queue`` or both
      (``PLAIT_PATCH=threading,queue``): ``patch()`` with those options too.

    Any other value changes nothing and prints one line on stderr that names the value
    (an exception would make ``site`` print a traceback in every interpreter that starts
    with it). Only the first call acts: ``site`` may read the same site-packages twice (a
    venv's ``lib64`` link). A child the standard module starts is left unpatched (see
    ``_started_by_the_standard_module``).
    """
    value = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if value in ("", "0") or _environment_read or _started_by_the_standard_module():
        return PatchReport()
    _environment_read.append(value)
    words = {word.strip() for word in value.split(",")} - {"1", "multiprocessing"}
    unknown = sorted(words - set(_OPT_IN))
    if unknown:
        print(
            f"plait: {ENVIRONMENT_VARIABLE}={value!r} is not understood ({', '.join(unknown)}):"
            f" use 1, or a list of {', '.join(_OPT_IN)}; nothing was patched",
            file=sys.stderr,
        )
        return PatchReport()
    return patch(**{option: option in words for option in _OPT_IN})


def _started_by_the_standard_module() -> bool:
    """Whether this interpreter is a child the standard ``multiprocessing`` started (a
    spawned child, its fork server, its resource tracker): it inherits ``PLAIT_PATCH``
    but runs the standard module's own bootstrap, which must find the standard
    functions (a patched program's standard children are not patched either)."""
    argv = sys.orig_argv
    if "--multiprocessing-fork" in argv:
        return True
    return any(
        flag == "-c" and code.lstrip().startswith("from multiprocessing.")
        for flag, code in zip(argv, argv[1:], strict=False)
    )


def _face_of(standard: str) -> str:
    for group in _GROUPS.values():
        if standard in group:
            return group[standard]
    raise KeyError(standard)


def _register_with_children() -> None:
    """Have ``plait.process.spawn`` carry the patch to new children (see the docstring)."""
    from plait.process import spawn  # noqa: PLC0415 - the process layer, only once patched

    spawn.child_preparers[__name__] = _child_options  # stays once this module is loaded


def _child_options() -> dict[str, bool] | bool:
    """The preparation data for a new child: the ``patch()`` arguments, or False once this
    process unpatched (a fork server's child may have inherited the server's patch)."""
    return dict(_options) if _patched else False


def _view_class(base: type, face_name: str, exempt: frozenset[str]) -> type:
    """A subclass of ``base`` (a module type) whose instances serve their public names
    from the module ``face_name`` to every reader outside ``exempt`` (top-level package
    names) and ``KEEP_STANDARD``, falling back to their own attribute where the face has
    none."""
    base_getattribute = base.__getattribute__
    getframe = sys._getframe
    face: list[types.ModuleType] = []  # imported on the first redirected read
    missing: set[str] = set()  # standard names the face does not have
    watched: set[str] = set()  # names whose class was given to ``watch`` already

    def __getattribute__(module: types.ModuleType, name: str) -> object:  # noqa: N807
        if name.startswith("_") or name in missing:
            return base_getattribute(module, name)
        try:
            reader = getframe(1).f_globals.get("__name__")
        except ValueError:  # read by C code with no Python frame below: the interpreter
            return base_getattribute(module, name)
        if type(reader) is str:
            top = reader.partition(".")[0]
            if top in exempt:
                return base_getattribute(module, name)
            if top in KEEP_STANDARD:
                warn_once(top, f"{top} keeps the standard multiprocessing: {KEEP_STANDARD[top]}")
                return base_getattribute(module, name)
        if isinstance(base_getattribute(module, "__dict__").get(name), types.ModuleType):
            return base_getattribute(module, name)  # a submodule: patched in its own right
        if not face:
            __import__(face_name)
            face.append(sys.modules[face_name])
        try:
            value = getattr(face[0], name)
        except AttributeError as e:
            if type(e) is not AttributeError or not str(e).startswith("module "):
                raise  # the face refuses the name and says why
        else:
            if name not in watched and isinstance(value, type):
                watched.add(name)
                watch(value, base_getattribute(module, name))
            return value
        missing.add(name)
        return base_getattribute(module, name)

    def __reduce_ex__(module: types.ModuleType, protocol: int) -> tuple:  # noqa: N807
        # By name, as cloudpickle pickles a module (its table is keyed by the exact type).
        return importlib.import_module, (base_getattribute(module, "__name__"),)

    return type(
        base.__name__,
        (base,),
        {"__getattribute__": __getattribute__, "__reduce_ex__": __reduce_ex__},
    )


# -- libraries built on the standard internals (see the module docstring) ------------

_JOBLIB_ADVICE = (
    "its process backends are built on the standard module's internals; to run joblib on "
    'plait, use Parallel(backend="plait") after importing plait.integrations.joblib'
)
# Top-level packages that always read the standard modules, and why.
KEEP_STANDARD: dict[str, str] = {
    "joblib": _JOBLIB_ADVICE,
    "loky": "it is a process-pool library of its own, built on the standard internals",
}


class _CallableModule(types.ModuleType):
    """This module's type: calling the module calls ``patch`` (see the module docstring)."""

    def __call__(self, *, threading: bool = False, queue: bool = False) -> PatchReport:
        return patch(threading=threading, queue=queue)


sys.modules[__name__].__class__ = _CallableModule
