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
on each, and fail or hang. They keep the standard modules, with one ``PatchWarning``
naming each:

- the top-level packages of ``KEEP_STANDARD`` (joblib, loky), read as plait itself is;
- a class defined outside plait that subclasses a class a face serves in place of a
  standard one (the view hooks ``__init_subclass__`` on each such class when it first
  serves it) and whose body defines or uses a private name of the standard class
  (``_setup_queues``, ``_inqueue``), or a public hook plait's class lacks: its base is
  swapped back to the standard class as it is made, so its instances run wholly on the
  standard module. A subclass written against the public interface stays on plait.

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
import warnings
from _thread import allocate_lock
from collections.abc import Iterator

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
    (an exception here would stop every interpreter that starts with it). Only the first
    call acts: ``site`` may read the same site-packages twice (a venv's ``lib64`` link).
    """
    value = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if value in ("", "0") or _environment_read:
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
                _warn_once(top, f"{top} keeps the standard multiprocessing: {KEEP_STANDARD[top]}")
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
            if isinstance(value, type) and value not in _watched:
                _watch_subclasses(value, base_getattribute(module, name))
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

_warned: set[str] = set()  # the libraries a PatchWarning named already
_watched: dict[type, type] = {}  # a face class -> the standard class it stands for


class PatchWarning(RuntimeWarning):
    """A library keeps (some of) the standard modules under ``patch()``; the message
    names it and says why."""


def _warn_once(library: str, message: str, stacklevel: int = 3) -> None:
    """One ``PatchWarning`` per library, pointing at the library's line (``stacklevel``
    counts from this function's caller's caller, as ``warnings.warn`` does from here)."""
    if library not in _warned:
        _warned.add(library)
        warnings.warn(f"plait.patch(): {message}", PatchWarning, stacklevel=stacklevel)


def _watch_subclasses(face_class: type, standard_class: object) -> None:
    """Have a class defined outside plait that subclasses ``face_class`` (served in
    place of ``standard_class``) and uses the standard class's internals become a
    subclass of the standard class instead, with a ``PatchWarning``."""
    _watched[face_class] = face_class
    if not isinstance(standard_class, type) or standard_class is face_class:
        return
    own = face_class.__dict__.get("__init_subclass__")

    def __init_subclass__(cls: type, **kwargs: object) -> None:  # noqa: N807
        if own is not None:
            own.__func__(cls, **kwargs)
        else:
            super(face_class, cls).__init_subclass__(**kwargs)
        if _patched:
            _keep_standard_if_needed(cls, face_class, standard_class)

    try:
        face_class.__init_subclass__ = classmethod(__init_subclass__)
    except TypeError:
        pass  # a C type: it cannot be told about subclasses (nor be subclassed by most)


def _keep_standard_if_needed(cls: type, face_class: type, standard_class: type) -> None:
    library = cls.__module__.partition(".")[0]
    if library == "plait":
        return
    touched = sorted(_names_used(cls) & _internals(standard_class, face_class))
    if not touched:
        return  # written against the public interface, which plait's class has
    cls.__bases__ = tuple(standard_class if b is face_class else b for b in cls.__bases__)
    standard = f"{standard_class.__module__}.{standard_class.__qualname__}"
    _warn_once(
        library,
        f"{cls.__module__}.{cls.__qualname__} subclasses {standard} and uses its internals "
        f"({', '.join(touched[:4])}), so it stays a subclass of the standard class and "
        "runs on the standard module",
        stacklevel=4,  # past _keep_standard_if_needed and __init_subclass__: the class line
    )


def _internals(standard_class: type, face_class: type) -> frozenset[str]:
    """The names a subclass can only mean the standard implementation by: the private
    attributes and methods the standard class defines or its code uses, and the public
    hooks it defines that plait's class does not have (``Pool.Process`` has one)."""
    private: set[str] = set()
    hooks: set[str] = set()
    for klass in standard_class.__mro__[:-1]:
        for name, value in vars(klass).items():
            private.update(_code_names(value))
            if not name.startswith("_") and not hasattr(face_class, name):
                hooks.add(name)
            private.add(name)
    return frozenset({n for n in private if n[:1] == "_" and n[:2] != "__"} | hooks)


def _names_used(cls: type) -> set[str]:
    """The names ``cls``'s own body defines, and the attribute names its methods use."""
    names = set(vars(cls))
    for value in vars(cls).values():
        names.update(_code_names(value))
    return names


def _code_names(value: object) -> set[str]:
    value = getattr(value, "__func__", value)  # classmethod, staticmethod
    if isinstance(value, property):
        functions = [value.fget, value.fset, value.fdel]
    else:
        functions = [value]
    names: set[str] = set()
    for function in functions:
        code = getattr(function, "__code__", None)
        stack = [code] if isinstance(code, types.CodeType) else []
        while stack:
            code = stack.pop()
            names.update(code.co_names)
            stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return names


class _CallableModule(types.ModuleType):
    """This module's type: calling the module calls ``patch`` (see the module docstring)."""

    def __call__(self, *, threading: bool = False, queue: bool = False) -> PatchReport:
        return patch(threading=threading, queue=queue)


sys.modules[__name__].__class__ = _CallableModule
