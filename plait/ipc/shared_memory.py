"""Named shared memory without files: ``SharedMemory`` and ``ShareableList``.

Theory of operation
-------------------
The standard library's blocks are files in ``/dev/shm``: they outlive every process
that used them unless someone calls ``unlink`` (a ``kill -9`` leaks them), and its
resource tracker unlinks them too early when one of several users exits. plait's block
is a ``memfd``: memory with no name in any file system, freed by the kernel when the last
process that holds its fd or maps it is gone, whatever the way it went.

The name still lets another process attach. A block's ``memfd`` carries the name in
its kernel label (``/memfd:plait-shm:NAME``), which ``/proc/PID/fd/N`` shows for every
process holding it. Attaching opens ``/proc/PID/fd/N`` of a process that holds the
block (that opens the same memory, as a file opened twice); a name made by plait
(``psm_...@PID.FD``) says where to look first, any other is found by scanning ``/proc``.
So a block can be attached while at least one process (of the same user) still holds
it open; once the last has closed it, the name is gone, as after ``unlink``.

The last page of the mapping is the block's own header: its size and an "unlinked"
mark. ``unlink()`` sets the mark: later attaches raise ``FileNotFoundError``, while
every process that has it keeps using it; the memory goes away with the last of them.

``ShareableList`` stores a fixed number of ``int``, ``float``, ``bool``, ``str``,
``bytes`` and ``None`` values in a block; each slot keeps the room of its first value
(at least 8 bytes), and a ``str`` or ``bytes`` that does not fit raises ``ValueError``.
Its layout is plait's own: a list made by the standard library cannot be attached.
"""

from __future__ import annotations

import errno
import mmap
import os
import secrets
import struct
from collections.abc import Iterable
from typing import Any

__all__ = ["ShareableList", "SharedMemory"]

_PAGE = mmap.PAGESIZE
_LABEL = "plait-shm:"
_META = struct.Struct("QQI")  # magic, size, unlinked
_MAGIC = 0x706C6169_74736D31  # "plaitsm1"


def _find(name: str) -> int:
    """An fd of the block called ``name``, opened through a process that holds it."""
    target = f"/memfd:{_LABEL}{name.split('@')[0]} (deleted)"
    candidates = []
    if "@" in name:
        pid, _, fd = name.rpartition("@")[2].partition(".")
        candidates.append(f"/proc/{pid}/fd/{fd}")
    for path in candidates:
        found = _open_if(path, target)
        if found >= 0:
            return found
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            found = _open_if(f"/proc/{pid}/fd/{fd}", target)
            if found >= 0:
                return found
    raise FileNotFoundError(errno.ENOENT, f"no shared memory block named {name!r}", name)


def _open_if(path: str, target: str) -> int:
    try:
        if os.readlink(path) != target:
            return -1
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return -1


class SharedMemory:
    """A block of shared memory with a name other processes attach by.

    ``SharedMemory(create=True, size=n)`` makes a new block (``name`` None: a fresh
    unique name; a given name that is in use raises ``FileExistsError``);
    ``SharedMemory(name)`` attaches to an existing one (``FileNotFoundError`` if no
    process holds it or it was unlinked). ``ValueError`` for a bad ``size`` or a missing
    ``name``.
    """

    def __init__(self, name: str | None = None, create: bool = False, size: int = 0) -> None:
        if not isinstance(size, int) or size < 0:
            raise ValueError("'size' must be a positive integer")
        if create and size == 0:
            raise ValueError("'size' must be a positive number different from zero")
        if not create and name is None:
            raise ValueError("'name' can only be None if create=True")
        self._fd = -1
        self._mmap = None
        self._buf = None
        if create:
            self._create(name, size)
        else:
            self._attach(name)

    def _create(self, name: str | None, size: int) -> None:
        if name is not None:
            if "@" in name:
                raise ValueError(f"a block name may not contain '@': {name!r}")
            try:
                os.close(_find(name))
            except FileNotFoundError:
                pass
            else:
                raise FileExistsError(errno.EEXIST, f"a shared memory block named {name!r} exists")
        base = name if name is not None else f"psm_{secrets.token_hex(8)}"
        fd = os.memfd_create(_LABEL + base, os.MFD_CLOEXEC)
        try:
            data = (size + _PAGE - 1) // _PAGE * _PAGE
            os.ftruncate(fd, data + _PAGE)
            self._map(fd, data + _PAGE)
            _META.pack_into(self._mmap, data, _MAGIC, size, 0)
        except BaseException:
            self._fd = -1
            os.close(fd)
            raise
        self._name = base if name is not None else f"{base}@{os.getpid()}.{fd}"
        self._size = size
        self._meta_at = data
        self._buf = memoryview(self._mmap)[:size]

    def _attach(self, name: str) -> None:
        fd = _find(name)
        try:
            total = os.fstat(fd).st_size
            if total < _PAGE or total % _PAGE:
                raise FileNotFoundError(errno.ENOENT, f"{name!r} is not a shared memory block")
            self._map(fd, total)
            magic, size, unlinked = _META.unpack_from(self._mmap, total - _PAGE)
            if magic != _MAGIC or size > total - _PAGE:
                raise FileNotFoundError(errno.ENOENT, f"{name!r} is not a shared memory block")
            if unlinked:
                raise FileNotFoundError(errno.ENOENT, f"shared memory block {name!r} was unlinked")
        except BaseException:
            if self._mmap is not None:
                self._mmap.close()
                self._mmap = None
            self._fd = -1
            os.close(fd)
            raise
        self._name = name
        self._size = size
        self._meta_at = total - _PAGE
        self._buf = memoryview(self._mmap)[:size]

    def _map(self, fd: int, length: int) -> None:
        self._mmap = mmap.mmap(fd, length)
        self._fd = fd

    @property
    def name(self) -> str:
        """The name other processes attach by."""
        return self._name

    @property
    def size(self) -> int:
        """The size of the block in bytes."""
        return self._size

    @property
    def buf(self) -> memoryview:
        """A writable view of the block's memory (None after ``close``)."""
        return self._buf

    def close(self) -> None:
        """Drop this object's access (idempotent); the block lives on for other users.

        Raises ``BufferError`` while views of ``buf`` exported elsewhere are alive.
        """
        if self._buf is not None:
            self._buf.release()
            self._buf = None
        if self._mmap is not None:
            self._mmap.close()
            self._mmap = None
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def unlink(self) -> None:
        """Make the name unusable for new attaches; users keep the memory until they close.

        Works after ``close`` too (the standard idiom ``close(); unlink()``); a block no
        process holds any more is already gone, and unlinking it does nothing. Raises
        ``FileNotFoundError`` if it was already unlinked.
        """
        if self._mmap is not None:
            _mark_unlinked(self._mmap, self._meta_at, self._name)
            return
        try:
            other = SharedMemory(self._name)
        except FileNotFoundError as exc:
            if "unlinked" in str(exc):
                raise
            return
        try:
            _mark_unlinked(other._mmap, other._meta_at, self._name)
        finally:
            other.close()

    def __del__(self) -> None:
        try:
            self.close()
        except (BufferError, AttributeError):
            pass

    def __enter__(self) -> SharedMemory:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __reduce__(self):
        return type(self), (self._name, False, self._size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name!r}, size={self._size})"


def _mark_unlinked(mapping: mmap.mmap, meta_at: int, name: str) -> None:
    magic, size, unlinked = _META.unpack_from(mapping, meta_at)
    if unlinked:
        raise FileNotFoundError(errno.ENOENT, f"{name!r} was already unlinked")
    _META.pack_into(mapping, meta_at, magic, size, 1)


# ShareableList slot kinds
_NONE, _INT, _FLOAT, _BOOL, _STR, _BYTES = range(6)
_KINDS = {type(None): _NONE, int: _INT, float: _FLOAT, bool: _BOOL, str: _STR, bytes: _BYTES}
_HEAD = struct.Struct("Q")


def _kind_of(x: Any) -> int:
    kind = _KINDS.get(type(x))
    if kind is None:
        raise TypeError(
            f"a ShareableList holds int, float, bool, str, bytes or None, not {type(x).__name__}"
        )
    return kind


class ShareableList:
    """A fixed-length list of ``int``/``float``/``bool``/``str``/``bytes``/``None`` in a
    ``SharedMemory`` block (see the module). ``ShareableList(sequence)`` creates one,
    ``ShareableList(name=...)`` attaches. Raises ``TypeError`` for other item types,
    ``ValueError`` when a new ``str``/``bytes`` exceeds its slot, ``IndexError``.
    """

    def __init__(self, sequence: Iterable[Any] | None = None, *, name: str | None = None):
        if sequence is None:
            if name is None:
                raise ValueError("give a sequence to create a list, or a name to attach")
            self.shm = SharedMemory(name)
            (self._n,) = _HEAD.unpack_from(self.shm.buf, 0)
            self._layout()
            return
        items = list(sequence)
        rooms = [self._room(x) for x in items]
        self._n = len(items)
        size = 8 + 17 * self._n + sum(rooms)
        self.shm = SharedMemory(name, create=True, size=max(size, 8))
        _HEAD.pack_into(self.shm.buf, 0, self._n)
        struct.pack_into(f"{self._n}Q", self.shm.buf, 8, *rooms)
        self._layout()
        for i, x in enumerate(items):
            self[i] = x

    @staticmethod
    def _room(x: Any) -> int:
        kind = _kind_of(x)
        if kind == _STR:
            return max(8, (len(x.encode()) + 7) // 8 * 8)
        if kind == _BYTES:
            return max(8, (len(x) + 7) // 8 * 8)
        return 8

    def _layout(self) -> None:
        n = self._n
        self._rooms = struct.unpack_from(f"{n}Q", self.shm.buf, 8)
        self._lengths_at = 8 + 8 * n
        self._kinds_at = 8 + 16 * n
        self._offsets = []
        at = 8 + 17 * n
        for room in self._rooms:
            self._offsets.append(at)
            at += room

    def _index(self, i: int) -> int:
        if not isinstance(i, int):
            raise TypeError(f"list indices must be integers, not {type(i).__name__}")
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("ShareableList index out of range")
        return i

    def __getitem__(self, i: int) -> Any:
        i = self._index(i)
        buf, at = self.shm.buf, self._offsets[i]
        kind = buf[self._kinds_at + i]
        if kind == _NONE:
            return None
        if kind == _INT:
            return struct.unpack_from("q", buf, at)[0]
        if kind == _FLOAT:
            return struct.unpack_from("d", buf, at)[0]
        if kind == _BOOL:
            return bool(buf[at])
        (length,) = struct.unpack_from("Q", buf, self._lengths_at + 8 * i)
        raw = bytes(buf[at : at + length])
        return raw.decode() if kind == _STR else raw

    def __setitem__(self, i: int, value: Any) -> None:
        i = self._index(i)
        kind = _kind_of(value)
        buf, at = self.shm.buf, self._offsets[i]
        if kind == _INT:
            struct.pack_into("q", buf, at, value)
        elif kind == _FLOAT:
            struct.pack_into("d", buf, at, value)
        elif kind == _BOOL:
            buf[at] = int(value)
        elif kind in (_STR, _BYTES):
            raw = value.encode() if kind == _STR else value
            if len(raw) > self._rooms[i]:
                raise ValueError(
                    f"{len(raw)} bytes do not fit slot {i}, which holds {self._rooms[i]}"
                )
            buf[at : at + len(raw)] = raw
            struct.pack_into("Q", buf, self._lengths_at + 8 * i, len(raw))
        buf[self._kinds_at + i] = kind

    def __len__(self) -> int:
        return self._n

    def __iter__(self):
        return (self[i] for i in range(self._n))

    def __reduce__(self):
        return _attach_list, (self.shm.name,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)!r}, name={self.shm.name!r})"

    @property
    def format(self) -> str:
        """The struct-like format of the items, as the standard library's attribute."""
        codes = {_NONE: "x", _INT: "q", _FLOAT: "d", _BOOL: "?", _STR: "s", _BYTES: "s"}
        buf = self.shm.buf
        return "".join(
            (str(self._rooms[i]) if buf[self._kinds_at + i] in (_STR, _BYTES) else "")
            + codes[buf[self._kinds_at + i]]
            for i in range(self._n)
        )

    def count(self, value: Any) -> int:
        """How many items equal ``value``."""
        return sum(value == x for x in self)

    def index(self, value: Any) -> int:
        """The first position of ``value``; ``ValueError`` if absent."""
        for i, x in enumerate(self):
            if x == value:
                return i
        raise ValueError(f"{value!r} not in this container")


def _attach_list(name: str) -> ShareableList:
    return ShareableList(name=name)
