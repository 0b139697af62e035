"""ctypes objects in shared memory: ``RawValue``, ``RawArray``, ``Value``, ``Array``.

Theory of operation
-------------------
Each object lives in its own small ``memfd`` mapped shared (the ``Block`` of
``plait._core.block``); the ctypes object is built on the mapping with
``from_buffer``, so reading and writing it is plain memory access, seen at once by every
process that maps the block. The object's class is a subclass of the ctypes type asked
for (``isinstance(v, ctypes.c_int)`` holds) that knows how to pickle itself: by sending
the memfd (``fdpass.reduce_fd``), so it travels as a ``Process`` argument or through a
plait ``Connection``; a forked child simply inherits it. The memory is freed by the
kernel when the last process that maps it is gone, also after ``kill -9``.

``Value`` and ``Array`` wrap the raw object with a lock (a new plait ``RLock`` by
default, the given ``Lock``/``RLock``, or none with ``lock=False``), as
``multiprocessing.sharedctypes``: ``get_lock()``, ``get_obj()``, ``value``, indexing
and slicing under the lock, ``with v:`` to hold it across several operations.

Bad input: an unknown typecode raises ``TypeError`` naming it, a negative size
``ValueError``, a ``lock`` without ``acquire`` ``AttributeError`` (as the standard
library), another kind of lock (a ``threading`` or standard ``multiprocessing`` one)
``TypeError`` naming it and plait's.
"""

from __future__ import annotations

import ctypes
import operator
from typing import Any

from plait._core.block import Block
from plait.ipc.synchronize import RLock, SemLock

__all__ = [
    "Array",
    "RawArray",
    "RawValue",
    "Synchronized",
    "SynchronizedArray",
    "SynchronizedBase",
    "SynchronizedString",
    "Value",
    "copy",
    "synchronized",
    "typecode_to_type",
]

typecode_to_type = {
    "c": ctypes.c_char,
    "u": ctypes.c_wchar,
    "b": ctypes.c_byte,
    "B": ctypes.c_ubyte,
    "h": ctypes.c_short,
    "H": ctypes.c_ushort,
    "i": ctypes.c_int,
    "I": ctypes.c_uint,
    "l": ctypes.c_long,
    "L": ctypes.c_ulong,
    "q": ctypes.c_longlong,
    "Q": ctypes.c_ulonglong,
    "f": ctypes.c_float,
    "d": ctypes.c_double,
}

_shared_types: dict[type, type] = {}


def _ctype(typecode_or_type: Any) -> type:
    if isinstance(typecode_or_type, str):
        try:
            return typecode_to_type[typecode_or_type]
        except KeyError:
            raise TypeError(
                f"unknown typecode {typecode_or_type!r}; use one of "
                f"{''.join(typecode_to_type)} or a ctypes type"
            ) from None
    try:
        ctypes.sizeof(typecode_or_type)
    except TypeError:
        raise TypeError(
            f"{typecode_or_type!r} is neither a typecode nor a ctypes type with a size"
        ) from None
    return typecode_or_type


def _shared(base: type) -> type:
    """The subclass of ctypes type ``base`` whose objects live in a ``Block``."""
    cls = _shared_types.get(base)
    if cls is None:
        namespace = {"__reduce__": _reduce_shared, "__module__": __name__}
        if issubclass(base, ctypes._SimpleCData):
            namespace["__repr__"] = _simple_repr
        cls = type(base)(base.__name__, (base,), namespace)
        _shared_types[base] = cls
    return cls


def _simple_repr(self) -> str:
    return f"{type(self).__name__}({self.value!r})"


def _reduce_shared(self):
    return _rebuild_shared, (_describe(type(self).__bases__[0]), self._plait_block)


def _describe(type_: type) -> Any:
    """A picklable description of a ctypes type (array types have no importable name)."""
    if issubclass(type_, ctypes.Array):
        return ("array", _describe(type_._type_), type_._length_)
    return type_


def _build(description: Any) -> type:
    if isinstance(description, tuple):
        _, item, length = description
        return _build(item) * length
    return description


def _rebuild_shared(description: Any, block: Block):
    return _on_block(_build(description), block)


def _on_block(base: type, block: Block):
    obj = _shared(base).from_buffer(block.mm)
    obj._plait_block = block
    return obj


def _new(base: type):
    return _on_block(base, Block(max(ctypes.sizeof(base), 1)))


def RawValue(typecode_or_type: Any, *args: Any):  # noqa: N802 - the standard library's name
    """A ctypes object in shared memory, initialized with ``args``; no lock."""
    obj = _new(_ctype(typecode_or_type))
    if args:
        obj.__init__(*args)
    return obj


def RawArray(typecode_or_type: Any, size_or_initializer: Any):  # noqa: N802
    """A ctypes array in shared memory: ``size`` zeros, or a copy of a sequence; no lock."""
    type_ = _ctype(typecode_or_type)
    if isinstance(size_or_initializer, int):
        size = operator.index(size_or_initializer)
        if size < 0:
            raise ValueError(f"an array size must be >= 0, not {size}")
        return _new(type_ * size)
    items = list(size_or_initializer)
    obj = _new(type_ * len(items))
    obj.__init__(*items)
    return obj


def Value(typecode_or_type: Any, *args: Any, lock: Any = True, ctx: Any = None):  # noqa: N802
    """A shared ctypes object with a lock (see the module); ``lock=False`` returns it raw.
    ``ctx``, the standard signature's context, changes nothing here."""
    obj = RawValue(typecode_or_type, *args)
    if lock is False:
        return obj
    return synchronized(obj, _lock(lock))


def Array(  # noqa: N802 - the standard library's name
    typecode_or_type: Any, size_or_initializer: Any, *, lock: Any = True, ctx: Any = None
):
    """A shared ctypes array with a lock (see the module); ``lock=False`` returns it raw.
    ``ctx``, the standard signature's context, changes nothing here."""
    obj = RawArray(typecode_or_type, size_or_initializer)
    if lock is False:
        return obj
    return synchronized(obj, _lock(lock))


def _lock(lock: Any):
    if lock in (True, None):
        return RLock()
    if not hasattr(lock, "acquire"):
        raise AttributeError(f"{lock!r} has no method 'acquire': pass a plait Lock or RLock")
    if not isinstance(lock, SemLock):
        kind = f"{type(lock).__module__}.{type(lock).__qualname__}"
        raise TypeError(
            f"a plait shared value is guarded across processes by a plait Lock or RLock "
            f"(plait.multiprocessing.Lock()), not by a {kind}"
        )
    return lock


def copy(obj: Any) -> Any:
    """A new shared object (no lock) holding a copy of the bytes of the ctypes object
    ``obj``, which may live anywhere."""
    shared = getattr(obj, "_plait_block", None) is not None
    new = _new(type(obj).__bases__[0] if shared else type(obj))
    ctypes.memmove(ctypes.addressof(new), ctypes.addressof(obj), ctypes.sizeof(new))
    return new


def synchronized(obj: Any, lock: Any = None, ctx: Any = None) -> SynchronizedBase:
    """Wrap the shared ctypes object ``obj`` with ``lock`` (a new RLock by default).

    A value gets ``value``, an array indexing and slicing, a ``c_char`` array ``value``
    and ``raw`` too, a structure one property per field: each reads and writes under the
    lock. ``ctx`` is the standard signature's context (plait's locks are the same in all).
    Raises ``AssertionError`` for an object already wrapped, as the standard library.
    """
    assert not isinstance(obj, SynchronizedBase), "object already synchronized"
    if isinstance(obj, ctypes._SimpleCData):
        return Synchronized(obj, lock)
    if isinstance(obj, ctypes.Array):
        if obj._type_ is ctypes.c_char:
            return SynchronizedString(obj, lock)
        return SynchronizedArray(obj, lock)
    return _synchronized_class(type(obj))(obj, lock)


_synchronized_classes: dict[type, type] = {}


def _synchronized_class(cls: type) -> type:
    """``Synchronized<Name>``: a ``SynchronizedBase`` with a locked property per field of
    the ctypes structure ``cls``, made once per structure."""
    made = _synchronized_classes.get(cls)
    if made is None:
        fields = [field[0] for field in getattr(cls, "_fields_", ())]
        namespace = {name: _locked_field(name) for name in fields}
        made = type(f"Synchronized{cls.__name__}", (SynchronizedBase,), namespace)
        _synchronized_classes[cls] = made
    return made


def _locked_field(name: str) -> property:
    def get(self):
        with self._lock:
            return getattr(self._obj, name)

    def set_(self, value) -> None:
        with self._lock:
            setattr(self._obj, name, value)

    return property(get, set_, doc=f"The field {name!r}, read and written under the lock.")


class SynchronizedBase:
    """A shared ctypes object and the lock that guards it."""

    def __init__(self, obj, lock=None, ctx=None) -> None:
        self._obj = obj
        self._lock = lock if lock is not None else RLock()
        self.acquire = self._lock.acquire
        self.release = self._lock.release

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *args) -> None:
        self._lock.__exit__(*args)

    def __reduce__(self):
        return synchronized, (self._obj, self._lock)

    def get_obj(self):
        """The raw shared ctypes object."""
        return self._obj

    def get_lock(self):
        """The lock that guards the object."""
        return self._lock

    def __repr__(self) -> str:
        return f"<{type(self).__name__} wrapper for {self._obj!r}>"


class Synchronized(SynchronizedBase):
    """A shared ctypes value: ``value`` reads and writes it under the lock."""

    @property
    def value(self):
        with self._lock:
            return self._obj.value

    @value.setter
    def value(self, new) -> None:
        with self._lock:
            self._obj.value = new


class SynchronizedArray(SynchronizedBase):
    """A shared ctypes array: ``len``, indexing and slicing under the lock."""

    def __len__(self) -> int:
        return len(self._obj)

    def __getitem__(self, i):
        with self._lock:
            return self._obj[i]

    def __setitem__(self, i, value) -> None:
        with self._lock:
            self._obj[i] = value


class SynchronizedString(SynchronizedArray):
    """A shared ``c_char`` array: ``value`` and ``raw`` as well."""

    @property
    def value(self) -> bytes:
        with self._lock:
            return self._obj.value

    @value.setter
    def value(self, new: bytes) -> None:
        with self._lock:
            self._obj.value = new

    @property
    def raw(self) -> bytes:
        with self._lock:
            return self._obj.raw

    @raw.setter
    def raw(self, new: bytes) -> None:
        with self._lock:
            self._obj.raw = new
