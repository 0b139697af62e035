"""Serialization: pickle protocol 5 first, cloudpickle when pickle refuses.

Theory of operation
-------------------
Every message plait moves between processes is a pickle of protocol 5. The C pickler
is fast and handles almost everything a program sends; what it refuses is code that
cannot be named by an import path: lambdas, closures, classes and functions defined
inside functions, and (in a child that did not import the parent's ``__main__``)
functions of an interactive session. For those we fall back to cloudpickle, which
pickles code by value. The fallback is taken only after the C pickler failed, so the
common case pays nothing, and cloudpickle is imported lazily so that a child process
that never needs it never pays its import time.

Out-of-band buffers: with ``dumps_oob`` the large buffers of a message (``bytes`` and
``bytearray`` over the threshold, ``memoryview``, numpy arrays: anything that hands
pickle a ``PickleBuffer``) are not copied into the pickle stream; they are returned
beside it so the transport can send them as they are (``sendmsg`` of many buffers, or
shared memory) and ``loads`` rebuilds the objects on top of the received memory.

Reducers a program registers (``register_reducer``, which
``multiprocessing.reduction.ForkingPickler.register`` calls) go into ``copyreg``'s
dispatch table, which both the C pickler and cloudpickle consult: every channel honours
them, including the fast paths that call ``pickle.dumps`` directly, at no cost to the
messages that do not need them. The price is that the reducer applies to every pickle
the process makes, not only to plait's messages.

Errors: an object that neither pickler can serialize raises ``pickle.PicklingError``
whose message names the type of the object and the reason the picklers gave.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import pickletools
import struct
from collections.abc import Callable, Iterable
from typing import Any

from plait._core import fdpass

__all__ = [
    "PROTOCOL",
    "dumps",
    "dumps_oob",
    "in_band",
    "loads",
    "register_reducer",
    "PicklingAttributeError",
    "PicklingError",
    "PicklingTypeError",
    "UnpicklingError",
]

PROTOCOL = 5
PicklingError = pickle.PicklingError
UnpicklingError = pickle.UnpicklingError

# What the C pickler raises for objects it cannot name: PicklingError for lambdas and
# objects whose attribute lookup fails, AttributeError for "local object" (3.10-3.13),
# TypeError for objects with no reducer at all (locks, sockets, generators).
REFUSALS = (pickle.PicklingError, AttributeError, TypeError)

_dumps = pickle.dumps
_loads = pickle.loads


def _cloudpickle():
    import cloudpickle  # noqa: PLC0415 - imported on first need, see module docstring

    return cloudpickle


def dumps(obj: Any) -> bytes:
    """Serialize ``obj`` to bytes (protocol 5); large buffers are copied in-band.

    Raises ``pickle.PicklingError`` naming the object's type when neither the C pickler
    nor cloudpickle can serialize it.
    """
    mark = fdpass.collected()
    try:
        return _dumps(obj, PROTOCOL)
    except REFUSALS as first:
        fdpass.drop_collected_since(mark)  # the failed attempt's fd dups
        return _by_value(obj, first, None)


def dumps_oob(obj: Any) -> tuple[bytes, list[pickle.PickleBuffer]]:
    """Serialize ``obj``, keeping its large buffers out of band.

    Returns ``(payload, buffers)``; pass both to ``loads`` on the other side, the
    buffers as any objects supporting the buffer protocol, in the same order.
    """
    buffers: list[pickle.PickleBuffer] = []
    mark = fdpass.collected()
    try:
        return _dumps(obj, PROTOCOL, buffer_callback=buffers.append), buffers
    except REFUSALS as first:
        buffers.clear()  # the failed attempt may have collected some
        fdpass.drop_collected_since(mark)  # and fd dups
        return _by_value(obj, first, buffers.append), buffers


class PicklingTypeError(pickle.PicklingError, TypeError):
    """The ``PicklingError`` of an object the C pickler refused with ``TypeError`` (one
    with no reducer: a lock, a socket): code written for the standard pickler's error
    catches it still."""


class PicklingAttributeError(pickle.PicklingError, AttributeError):
    """The ``PicklingError`` of an object the C pickler refused with ``AttributeError``
    (a local object, before Python 3.14), for the same reason."""


_REFUSAL_ERRORS = {TypeError: PicklingTypeError, AttributeError: PicklingAttributeError}


def _by_value(obj: Any, first: BaseException, buffer_callback) -> bytes:
    try:
        return _cloudpickle().dumps(obj, PROTOCOL, buffer_callback=buffer_callback)
    except Exception as second:
        raise _REFUSAL_ERRORS.get(type(first), pickle.PicklingError)(
            f"cannot pickle {type(obj).__qualname__!s} object: {first}"
            + ("" if str(second) == str(first) else f"; cloudpickle: {second}")
        ) from second


def loads(data: bytes | bytearray | memoryview, buffers: Iterable[Any] | None = None) -> Any:
    """Rebuild an object from ``dumps``/``dumps_oob`` output.

    Raises ``pickle.UnpicklingError`` (or the error the object's reducer raised) for a
    corrupt payload.
    """
    return _loads(data, buffers=buffers)


_NEXT_BUFFER, _FRAME = pickle.NEXT_BUFFER[0], pickle.FRAME[0]
_BYTEARRAY8 = pickle.BYTEARRAY8
_U64 = struct.Struct("<Q")


def in_band(payload: bytes | memoryview, buffers: list[Any]) -> bytes:
    """The pickle ``loads(payload, buffers)`` would read, with its buffers in-band, made
    without unpickling: a peer's pickle is not run to be converted.

    Each ``NEXT_BUFFER`` becomes a ``BYTEARRAY8`` holding that buffer (a following
    ``READONLY_BUFFER`` still applies), and the frames go (their lengths would be wrong;
    a pickle needs none). Raises ``pickle.UnpicklingError`` for a payload that is not a
    pickle or does not use exactly ``len(buffers)`` buffers.
    """
    view = memoryview(payload).cast("B")
    parts: list[Any] = []
    start = used = 0
    try:
        for op, _, pos in pickletools.genops(io.BytesIO(view)):
            code = op.code.encode("latin-1")[0]
            if code == _FRAME:
                parts.append(view[start:pos])
                start = pos + 1 + 8
            elif code == _NEXT_BUFFER:
                if used == len(buffers):
                    raise pickle.UnpicklingError("the pickle uses more buffers than it came with")
                data = memoryview(buffers[used]).cast("B")
                used += 1
                parts += (view[start:pos], _BYTEARRAY8, _U64.pack(data.nbytes), data)
                start = pos + 1
    except ValueError as exc:  # what genops raises for bytes that are not a pickle
        raise pickle.UnpicklingError(f"not a pickle: {exc}") from None
    if used != len(buffers):
        raise pickle.UnpicklingError(f"the pickle used {used} of its {len(buffers)} buffers")
    parts.append(view[start:])
    return b"".join(parts)


def register_reducer(type_: type, reduce: Callable[[Any], Any]) -> None:
    """Pickle instances of ``type_`` (exactly that class) as ``reduce(obj)`` returns.

    ``reduce`` returns what ``__reduce__`` would: ``(callable, args)`` and optionally
    state. Applies to every message plait sends from then on, and to every other pickle
    this process makes (see the module docstring).
    """
    if not isinstance(type_, type):
        raise TypeError(f"register_reducer() needs a class, not {type_!r}")
    if not callable(reduce):
        raise TypeError(f"the reducer for {type_.__qualname__} must be callable")
    copyreg.dispatch_table[type_] = reduce
