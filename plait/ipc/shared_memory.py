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
``bytes`` and ``None`` values in a block, in the standard library's layout (so its
``format`` reads the same); each slot keeps the room of its first value, and a ``str``
or ``bytes`` that does not fit raises ``ValueError``.

Creating a block under a given name is atomic, as ``O_CREAT | O_EXCL`` is: the
creator first takes the name's lock, an abstract Unix socket bound to
``"\\0plait-shm:UID:NAME"`` (the kernel lets one socket at a time hold an address, and
frees it when the socket closes, also when its process dies); under the lock it looks
for a live block of that name (``FileExistsError`` if there is one) and makes its
memfd. The lock is held only for that check and creation, so it never outlives the
creator: a block whose creator closed or died while others hold it keeps its name,
found by the same look, until it is unlinked or its last holder lets go. Another
creator of the same name waits for the lock (a few milliseconds, at most
``_LOCK_WAIT`` seconds) and then finds the block made under it.

Names: a name made here (``SharedMemory(create=True)``) is ``psm_`` and random hex, as
the standard library's (``_make_filename``), drawn again while a block this process
made and still has open has it, then ``@PID.FD`` (zero-padded to a fixed width, so all
made names are as long as each other), which says where to look first. The locator
makes the name unique among all processes' blocks, so making one reads no directory.
A name given by the caller is taken as it is (it may not contain ``@``).
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import secrets
import socket
import struct
import time
import types
from collections.abc import Iterable, Iterator
from typing import Any

from plait._core.block import Block

__all__ = ["ShareableList", "SharedMemory"]

_PAGE = mmap.PAGESIZE
_O_CREX = os.O_CREAT | os.O_EXCL
_SHM_SAFE_NAME_LENGTH = 14
_SHM_NAME_PREFIX = "/psm_"
_USE_POSIX = True  # the standard flag: POSIX semantics (a name is unlinked once)
_LABEL = "plait-shm:"
_META = struct.Struct("QQI")  # magic, size, unlinked
_MAGIC = 0x706C6169_74736D31  # "plaitsm1"
_PID_DIGITS = 7  # PID_MAX_LIMIT is 4194304
_FD_DIGITS = 7  # fs.nr_open is 1048576 by default; a larger fd only makes a longer name
_LOCK_WAIT = 10.0  # seconds another creator of the same name may hold its lock
_MAX_ADDRESS = 108  # sizeof(sockaddr_un.sun_path)
_made_here: set[str] = set()  # random parts of the made names of blocks open here


def _make_filename() -> str:
    """A fresh random block name, ``/psm_`` and hex digits, as the standard module's
    function of this name makes (the leading slash is not part of ``SharedMemory.name``)."""
    nbytes = (_SHM_SAFE_NAME_LENGTH - len(_SHM_NAME_PREFIX)) // 2
    return _SHM_NAME_PREFIX + secrets.token_hex(nbytes)


# The creation locks this process holds now. A child forked while one is held (by another
# thread) closes its copies at once, or the name would stay locked for the child's life.
_held_locks: set[socket.socket] = set()


def _close_held_locks_in_child() -> None:
    for sock in _held_locks:
        sock.close()
    _held_locks.clear()


os.register_at_fork(after_in_child=_close_held_locks_in_child)


@contextlib.contextmanager
def _name_locked(name: str) -> Iterator[None]:
    """Hold the creation lock of ``name`` (see ``_lock_name``) for the ``with`` block."""
    sock = _lock_name(name)
    _held_locks.add(sock)
    try:
        yield
    finally:
        _held_locks.discard(sock)
        sock.close()


def _lock_name(name: str) -> socket.socket:
    """The creation lock of the block name ``name``, taken: a socket bound to an
    abstract address made of the name (hashed if too long: then two names may share a
    lock, which only makes one wait for the other). Waits while another process holds
    it; ``TimeoutError`` after ``_LOCK_WAIT`` seconds."""
    key = os.fsencode(name)
    address = b"\0plait-shm:%d:%s" % (os.getuid(), key)
    if len(address) > _MAX_ADDRESS:
        import hashlib

        address = b"\0plait-shm:%d#%s" % (os.getuid(), hashlib.sha256(key).hexdigest().encode())
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    deadline = time.monotonic() + _LOCK_WAIT
    pause = 0.0005
    while True:
        try:
            sock.bind(address)
            return sock
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                sock.close()
                raise
        if time.monotonic() >= deadline:
            sock.close()
            raise TimeoutError(
                f"another process has been creating a shared memory block named {name!r} "
                f"for {_LOCK_WAIT} s (its lock is the abstract socket {address!r})"
            )
        time.sleep(pause)
        pause = min(2 * pause, 0.02)


def _find(name: str) -> int:
    """An fd of the live (not unlinked) block called ``name``, opened through a process
    that holds it. Raises ``FileNotFoundError``, saying so when only unlinked blocks of
    that name are left."""
    target = f"/memfd:{_LABEL}{name.split('@')[0]} (deleted)"
    unlinked: list[bool] = []
    if "@" in name:
        pid, _, fd = name.rpartition("@")[2].partition(".")
        try:
            where = f"/proc/{int(pid)}/fd/{int(fd)}"  # /proc refuses leading zeros
        except ValueError:
            where = ""
        found = _open_if(where, target, unlinked) if where else -1
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
            found = _open_if(f"/proc/{pid}/fd/{fd}", target, unlinked)
            if found >= 0:
                return found
    if unlinked:
        raise FileNotFoundError(errno.ENOENT, f"shared memory block {name!r} was unlinked", name)
    raise FileNotFoundError(errno.ENOENT, f"no shared memory block named {name!r}", name)


def _open_if(path: str, target: str, unlinked: list[bool]) -> int:
    """``path`` opened if it is a live block labelled ``target``, else -1 (and a note in
    ``unlinked`` if it was an unlinked one)."""
    try:
        if os.readlink(path) != target:
            return -1
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return -1
    try:
        total = os.fstat(fd).st_size
        meta = os.pread(fd, _META.size, total - _PAGE) if total >= _PAGE else b""
    except OSError:
        meta = b""
    if len(meta) == _META.size and _META.unpack(meta)[2]:
        os.close(fd)
        unlinked.append(True)
        return -1
    return fd


class SharedMemory:
    """A block of shared memory with a name other processes attach by.

    ``SharedMemory(create=True, size=n)`` makes a new block (``name`` None: a fresh
    unique name; a given name that is in use raises ``FileExistsError``);
    ``SharedMemory(name)`` attaches to an existing one (``FileNotFoundError`` if no
    process holds it or it was unlinked; ``size`` is then ignored). ``ValueError`` for a
    bad ``size`` or a missing ``name``. A subclass whose ``_flags`` has ``os.O_CREAT``
    (without ``os.O_EXCL``) attaches or, if the name is free, creates, as in the standard
    library.

    ``track`` (keyword only, the standard's from Python 3.13, accepted on every version)
    says whether the standard library's resource tracker should unlink the block when
    the process exits. A plait block needs no tracker: the kernel frees it when the
    last process holding it is gone, whatever the way it went (as the standard library
    does on Windows, where it ignores ``track`` too). So both values keep the block
    alive for the processes that still hold it.
    """

    _flags = os.O_RDWR
    _mode = 0o600  # the standard attribute; a memfd has no permissions to set
    _track = True

    def __init__(
        self, name: str | None = None, create: bool = False, size: int = 0, *, track: bool = True
    ) -> None:
        if not isinstance(size, int) or size < 0:
            raise ValueError("'size' must be a positive integer")
        if create:
            self._flags = _O_CREX | os.O_RDWR
            if size == 0:
                raise ValueError("'size' must be a positive number different from zero")
        if name is None and not self._flags & os.O_EXCL:
            raise ValueError("'name' can only be None if create=True")
        self._track = track
        self._block: Block | None = None
        self._buf = None
        self._saw_unlinked = False
        self._made = None
        if name is None:
            self._create(None, size)
        elif not self._flags & os.O_CREAT:
            self._attach(name, _find(name))
        else:
            self._open_or_create(name, size)

    def _open_or_create(self, name: str, size: int) -> None:
        """Create the block ``name`` or, if it exists and ``_flags`` lacks ``O_EXCL``,
        attach to it: one step for every process, under the name's lock."""
        if "@" in name:
            if not self._flags & os.O_EXCL:
                try:
                    self._attach(name, _find(name))
                    return
                except FileNotFoundError:
                    pass
            raise ValueError(f"a block name may not contain '@': {name!r}")
        with _name_locked(name):
            try:
                fd = _find(name)
            except FileNotFoundError:
                if size == 0:
                    raise ValueError(
                        "'size' must be a positive number different from zero"
                    ) from None
                self._create(name, size)
                return
            if self._flags & os.O_EXCL:
                os.close(fd)
                raise FileExistsError(errno.EEXIST, f"a shared memory block named {name!r} exists")
            self._attach(name, fd)

    def _create(self, name: str | None, size: int) -> None:
        if name is None:
            # A fresh name, as the standard library makes it (``_make_filename``), that
            # no block this process made and holds has; the locator appended below
            # makes it unique among all blocks.
            while True:
                internal = _make_filename()
                base = internal[1:] if internal.startswith("/") else internal
                if base not in _made_here:
                    break
        else:
            internal, base = "/" + name, name
        data = (size + _PAGE - 1) // _PAGE * _PAGE
        self._block = Block(data + _PAGE, name=_LABEL + base)
        _META.pack_into(self._block.mm, data, _MAGIC, size, 0)
        self._name = internal
        if name is None:
            self._locator = f"@{os.getpid():0{_PID_DIGITS}d}.{self._block.fd:0{_FD_DIGITS}d}"
            self._made = base
            _made_here.add(base)
        else:
            self._locator = ""
        self._size = size
        self._meta_at = data
        self._buf = memoryview(self._block.mm)[:size]

    def _attach(self, name: str, fd: int) -> None:
        """Map the block ``fd``, found under ``name``; it is this object's from now."""
        try:
            total = os.fstat(fd).st_size
        except BaseException:
            os.close(fd)
            raise
        if total < _PAGE or total % _PAGE:
            os.close(fd)
            raise FileNotFoundError(errno.ENOENT, f"{name!r} is not a shared memory block")
        try:
            block = Block(total, fd)
        except ValueError as exc:  # a memfd of that label, but not sealed: not plait's
            raise FileNotFoundError(errno.ENOENT, f"{name!r} is not a shared memory block") from exc
        magic, size, unlinked = _META.unpack_from(block.mm, total - _PAGE)
        if magic != _MAGIC or size > total - _PAGE:
            block.close()
            raise FileNotFoundError(errno.ENOENT, f"{name!r} is not a shared memory block")
        if unlinked:
            block.close()
            raise FileNotFoundError(errno.ENOENT, f"shared memory block {name!r} was unlinked")
        self._block = block
        base, at, where = name.partition("@")
        self._name = "/" + base
        self._locator = at + where
        self._size = size
        self._meta_at = total - _PAGE
        self._buf = memoryview(block.mm)[:size]

    @property
    def name(self) -> str:
        """The name other processes attach by."""
        return self._name[1:] + self._locator

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
        block = self._block
        if block is not None:
            self._saw_unlinked = bool(_META.unpack_from(block.mm, self._meta_at)[2])
            block.close()
            self._block = None
        if self._made is not None:
            _made_here.discard(self._made)
            self._made = None

    def _is_unlinked(self) -> bool:
        """Whether the block was unlinked (by any process); False once closed here."""
        block = self._block
        return block is not None and bool(_META.unpack_from(block.mm, self._meta_at)[2])

    def unlink(self) -> None:
        """Make the name unusable for new attaches; users keep the memory until they close.

        Works after ``close`` too (the standard idiom ``close(); unlink()``); a block no
        process holds any more is already gone, and unlinking it does nothing. Raises
        ``FileNotFoundError`` if it was already unlinked (known to this object: marked
        before it closed, or still marked in a live block).
        """
        if self._block is not None:
            _mark_unlinked(self._block.mm, self._meta_at, self.name)
            return
        if self._saw_unlinked:
            raise FileNotFoundError(errno.ENOENT, f"{self.name!r} was already unlinked")
        try:
            other = SharedMemory(self.name)
        except FileNotFoundError as exc:
            if "unlinked" in str(exc):
                raise
            return
        try:
            _mark_unlinked(other._block.mm, other._meta_at, self.name)
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
        return type(self), (self.name, False, self._size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, size={self._size})"


def _mark_unlinked(mapping: mmap.mmap, meta_at: int, name: str) -> None:
    magic, size, unlinked = _META.unpack_from(mapping, meta_at)
    if unlinked:
        raise FileNotFoundError(errno.ENOENT, f"{name!r} was already unlinked")
    _META.pack_into(mapping, meta_at, magic, size, 1)


# ShareableList: the formats of the standard library's layout, by item type, and the
# codes that say how a slot's unpacked value becomes the item.
_FORMATS = {int: "q", float: "d", bool: "xxxxxxx?", type(None): "xxxxxx?x"}
_AS_IS, _AS_STR, _AS_BYTES, _AS_NONE = range(4)
_CODES = {str: _AS_STR, bytes: _AS_BYTES, type(None): _AS_NONE}
_COUNT = struct.Struct("q")
_FORMAT = struct.Struct("8s")
_CODE = struct.Struct("b")


def _slot(item: Any) -> tuple[str, int, Any]:
    """(format, room in bytes, value to pack) of a new list's item."""
    kind = type(item)
    if kind is str or kind is bytes:
        raw = item.encode() if kind is str else item
        # The standard's room counts characters; where UTF-8 needs more (where the
        # standard library would cut the text), it is the encoded length's.
        room = 8 * (max(len(item), len(raw) - 1) // 8 + 1)
        return f"{room}s", room, raw
    fmt = _FORMATS.get(kind)
    if fmt is None:
        raise TypeError(
            f"a ShareableList holds int, float, bool, str, bytes or None, not {kind.__name__}"
        )
    return fmt, 8, item


class ShareableList:
    """A fixed-length list of ``int``/``float``/``bool``/``str``/``bytes``/``None`` in a
    ``SharedMemory`` block. ``ShareableList(sequence)`` creates one (``name`` names its
    block), ``ShareableList(name=...)`` attaches. Raises ``TypeError`` for other item
    types, ``ValueError`` when a ``str``/``bytes`` exceeds its slot, ``IndexError``.

    The block's layout is the standard library's, so ``format`` reads the same: the
    count, the slots' offsets, the items, one 8-byte ``struct`` format per item, one
    code per item (how to rebuild it). A slot keeps the room its first item had (8
    bytes; a ``str`` or ``bytes``: its length rounded up past a multiple of 8, and
    at least its UTF-8 length).
    As in the standard library, a ``str`` or ``bytes`` item loses trailing NUL bytes.
    """

    def __init__(self, sequence: Iterable[Any] | None = None, *, name: str | None = None):
        if name is not None and sequence is None:
            self.shm = SharedMemory(name)
            (self._n,) = _COUNT.unpack_from(self.shm.buf, 0)
            self._offsets = struct.unpack_from(f"{self._n + 1}q", self.shm.buf, 8)
            return
        items = list(sequence or ())
        slots = [_slot(x) for x in items]
        n = self._n = len(items)
        offsets = [0]
        for _, room, _ in slots:
            offsets.append(offsets[-1] + room)
        self._offsets = tuple(offsets)
        size = (n + 2) * 8 + offsets[-1] + 9 * n
        self.shm = SharedMemory(name, create=True, size=size)
        buf = self.shm.buf
        struct.pack_into(f"q{n + 1}q", buf, 0, n, *offsets)
        for i, (fmt, _, value) in enumerate(slots):
            self._store(i, fmt, _CODES.get(type(items[i]), _AS_IS), value)

    @property
    def _data(self) -> int:
        return (self._n + 2) * 8

    def _store(self, i: int, fmt: str, code: int, value: Any) -> None:
        buf = self.shm.buf
        formats = self._data + self._offsets[-1]
        struct.pack_into(fmt, buf, self._data + self._offsets[i], value)
        _FORMAT.pack_into(buf, formats + 8 * i, fmt.encode())
        _CODE.pack_into(buf, formats + 8 * self._n + i, code)

    def _get_packing_format(self, position: int) -> str:
        """The ``struct`` format of the item at ``position`` (the standard's name)."""
        i = self._index(position)
        at = self._data + self._offsets[-1] + 8 * i
        return _FORMAT.unpack_from(self.shm.buf, at)[0].rstrip(b"\x00").decode()

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
        buf = self.shm.buf
        formats = self._data + self._offsets[-1]
        fmt = _FORMAT.unpack_from(buf, formats + 8 * i)[0].rstrip(b"\x00").decode()
        (value,) = struct.unpack_from(fmt, buf, self._data + self._offsets[i])
        code = buf[formats + 8 * self._n + i]
        if code == _AS_IS:
            return value
        if code == _AS_NONE:
            return None
        value = value.rstrip(b"\x00")
        return value.decode() if code == _AS_STR else value

    def __setitem__(self, i: int, value: Any) -> None:
        i = self._index(i)
        kind = type(value)
        if kind is str or kind is bytes:
            raw = value.encode() if kind is str else value
            room = self._offsets[i + 1] - self._offsets[i]
            if len(raw) > room:
                raise ValueError(
                    f"bytes/str item exceeds available storage: {len(raw)} bytes for "
                    f"slot {i}, which holds {room}"
                )
            self._store(i, f"{room}s", _CODES[kind], raw)
            return
        fmt, _, value = _slot(value)
        self._store(i, fmt, _CODES.get(kind, _AS_IS), value)

    def __len__(self) -> int:
        return self._n

    def __iter__(self):
        return (self[i] for i in range(self._n))

    def __reduce__(self):
        return _attach_list, (type(self), self.shm.name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)}, name={self.shm.name!r})"

    @property
    def format(self) -> str:
        """The ``struct`` formats of the items, one after the other (the standard's)."""
        return "".join(self._get_packing_format(i) for i in range(self._n))

    def count(self, value: Any) -> int:
        """How many items equal ``value``."""
        return sum(value == x for x in self)

    def index(self, value: Any) -> int:
        """The first position of ``value``; ``ValueError`` if absent."""
        for i, x in enumerate(self):
            if x == value:
                return i
        raise ValueError(f"{value!r} not in this container")

    __class_getitem__ = classmethod(types.GenericAlias)


def _attach_list(cls: type, name: str) -> ShareableList:
    return cls(name=name)
