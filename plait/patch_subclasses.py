"""Under ``plait.patch()``: subclasses of replaced standard classes that need the standard one.

A library may subclass a standard class and reach into its implementation: joblib's
pools override ``multiprocessing.pool.Pool._setup_queues`` and use ``_inqueue``. Under
``patch()`` the name it reads serves plait's class, which has neither; such a subclass
would run half on plait and half on code that never runs, and fail or hang. This module
decides, when such a class is made, whether it needs the standard class, and then gives
it that class back.

Theory of operation
-------------------
The patched module view calls ``watch(face_class, standard_class)`` for every class it
serves in place of a different standard class (plait's ``Process`` stands for several:
``multiprocessing.Process``, ``multiprocessing.process.BaseProcess``...). The first call
for a class installs an ``__init_subclass__`` on it that calls ``examine`` for every new
subclass while the program is patched.

``examine`` compares names, read from the code, never run:

- what the subclass uses: the names its body defines, and every name its functions'
  code refers to (attributes included);
- what only the standard implementation means: the private names of the standard
  class and of its code, the public names its class defines, and the attributes its
  code sets on instances (``self.mutex``); minus every name that plait's class defines
  or its code uses, since plait honours those (``Process._target``, a proxy's
  ``_callmethod``).

If the two meet, the subclass was written against the standard implementation:

- a direct subclass of plait's class becomes a subclass of the standard class (its
  ``__bases__`` swapped, the most derived of the standard classes plait's class stands
  for), so it runs wholly on the standard module; one ``PatchWarning`` names it;
- a subclass whose plait base is further up (its own base is a class that runs on
  plait) cannot be swapped without moving that base too: it stays, and the warning
  says it may not work;
- a class whose layout cannot take the standard base (plait's thread ``Queue`` is a C
  type) raises ``TypeError`` naming the class and how to avoid the patch for it: a
  clear error at import rather than a class that runs half on each.

What it does not see: names built at run time (``getattr(self, "_" + name)``), and code
outside the class body (a module-level helper, a decorator's wrapper).
"""

from __future__ import annotations

import sys
import threading
import types
import warnings
from typing import Any

__all__ = ["PatchWarning", "examine", "warn_once", "watch"]

_lock = threading.Lock()
_standard_of: dict[type, list[type]] = {}  # a face class -> the standard classes it serves
_warned: set[str] = set()  # the libraries a PatchWarning named already
active = [False]  # whether a patch is in force (plait.patch sets it)


class PatchWarning(RuntimeWarning):
    """A library keeps (some of) the standard modules under ``patch()``; the message
    names it and says why."""


def warn_once(library: str, message: str) -> None:
    """One ``PatchWarning`` per library, at the first frame outside plait's patch code
    and the interpreter's frozen modules (the library's line)."""
    with _lock:
        if library in _warned:
            return
        _warned.add(library)
    level, frame = 2, sys._getframe(1)
    while frame is not None and (
        frame.f_globals.get("__name__", "").startswith("plait.patch")
        or frame.f_code.co_filename.startswith("<frozen")  # abc.ABCMeta.__new__, imports
    ):
        frame, level = frame.f_back, level + 1
    warnings.warn(f"plait.patch(): {message}", PatchWarning, stacklevel=level)


def watch(face_class: type, standard_class: Any) -> None:
    """Note that ``face_class`` is served in place of ``standard_class``; the first time,
    have its new subclasses examined."""
    if not isinstance(standard_class, type) or standard_class is face_class:
        return
    known = _standard_of.get(face_class)
    if known is not None and standard_class in known:
        return  # every read after the first
    with _lock:
        known = _standard_of.get(face_class)
        if known is not None:
            if standard_class not in known:
                known.append(standard_class)
            return
        _standard_of[face_class] = [standard_class]
    own = face_class.__dict__.get("__init_subclass__")

    def __init_subclass__(cls: type, **kwargs: Any) -> None:  # noqa: N807
        if own is not None:
            own.__func__(cls, **kwargs)
        else:
            super(face_class, cls).__init_subclass__(**kwargs)
        if active[0] and _nearest_watched(cls) is face_class:
            examine(cls, face_class)

    try:
        face_class.__init_subclass__ = classmethod(__init_subclass__)
    except TypeError:
        pass  # a C type cannot be told of its subclasses


def examine(cls: type, face_class: type) -> None:
    """Give ``cls`` (a new subclass of ``face_class``) the standard base it was written
    for, if it was (see the module docstring)."""
    library = cls.__module__.partition(".")[0]
    if library == "plait":
        return
    standard = _most_derived(_standard_of[face_class])
    touched = sorted(_used(cls) & (_meant_by(standard) - _known_to(face_class)))
    if not touched:
        return  # written against what plait's class has
    names = f"{cls.__module__}.{cls.__qualname__}"
    standard_name = f"{standard.__module__}.{standard.__qualname__}"
    uses = f"uses {', '.join(touched[:4])} of {standard_name}"
    if face_class not in cls.__bases__:
        warn_once(
            library,
            f"{names} {uses}, which plait's class does not have; it cannot be given the "
            f"standard class back because its base runs on plait, and may not work: "
            "define it before plait.patch()",
        )
        return
    try:
        cls.__bases__ = tuple(standard if b is face_class else b for b in cls.__bases__)
    except TypeError:
        raise TypeError(
            f"plait.patch(): {names} {uses}, which plait's {face_class.__qualname__} "
            "does not have, and it cannot become a subclass of the standard class "
            "(their layouts differ): import it before plait.patch(), or patch without "
            "the option that replaces the standard class"
        ) from None
    warn_once(library, f"{names} {uses}, so it stays a subclass of the standard class")


def _nearest_watched(cls: type) -> type | None:
    """The first class above ``cls`` served in place of a standard one: the hook of each
    such class runs for ``cls``, and only the nearest examines it."""
    return next((klass for klass in cls.__mro__[1:] if klass in _standard_of), None)


def _most_derived(classes: list[type]) -> type:
    for candidate in classes:
        if all(issubclass(candidate, other) for other in classes):
            return candidate
    return classes[0]


def _meant_by(standard: type) -> set[str]:
    """The names only the standard implementation gives meaning to (before plait's are
    taken out): private names, class attributes, attributes set on instances."""
    names: set[str] = set()
    for klass in standard.__mro__[:-1]:
        for name, value in vars(klass).items():
            names.add(name)
            for code in _codes(value):
                names.update(n for n in code.co_names if n[:1] == "_")
                names.update(_attributes_set(code))
    return {name for name in names if not name.startswith("__")}


def _known_to(face_class: type) -> set[str]:
    """Every name plait's class defines or its code uses."""
    names: set[str] = set()
    for klass in face_class.__mro__[:-1]:
        for name, value in vars(klass).items():
            names.add(name)
            for code in _codes(value):
                names.update(code.co_names)
    return names


def _used(cls: type) -> set[str]:
    names = set(vars(cls))
    for value in vars(cls).values():
        for code in _codes(value):
            names.update(code.co_names)
    return names


def _codes(value: Any) -> list[types.CodeType]:
    """The code objects of a class attribute (a function, classmethod, staticmethod or
    property), nested code (closures, comprehensions) included."""
    value = getattr(value, "__func__", value)
    functions = [value.fget, value.fset, value.fdel] if isinstance(value, property) else [value]
    stack = [
        f.__code__ for f in functions if isinstance(getattr(f, "__code__", None), types.CodeType)
    ]
    found = []
    while stack:
        code = stack.pop()
        found.append(code)
        stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return found


def _attributes_set(code: types.CodeType) -> set[str]:
    import dis  # noqa: PLC0415 - only when a subclass is examined, not in every child

    return {i.argval for i in dis.get_instructions(code) if i.opname == "STORE_ATTR"}
