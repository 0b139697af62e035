"""The worker: the loop a pool's process runs, and how its answers travel back.

Theory of operation
-------------------
A worker owns one end of a ``Pipe``; the pool's scheduler owns the other. Messages are:

    scheduler -> worker   [(chunk_id, func, kind, items), ...]   or None: "exit now"
    worker -> scheduler   (chunk_id, values, errors, seconds)       one per chunk

The scheduler sends chunks in batches (one message, one system call, for many small
chunks), but every chunk is answered on its own, so the scheduler always knows which
chunks a worker finished and which one it was running.

``func`` travels as the bytes ``serialization.dumps`` made of it once per job (cloudpickle
for lambdas and closures), so a chunk's list of arguments always takes the C pickler's
fast path; the worker keeps the functions it has rebuilt, keyed by those bytes. ``kind``
says how to call: ``MAP`` ``func(x)``, ``STAR`` ``func(*x)``, ``APPLY`` ``func(*args,
**kwds)`` for ``items = [(args, kwds)]``.

A chunk runs as ``list.extend(map(func, items))``: the C loop, no Python frame per item.
When an item raises, ``extend`` keeps what it appended and ``map`` resumes after the
failed item, so one bad item costs nothing to the others: the exception (with its remote
traceback) goes in ``errors`` as ``(position, exception)`` and its value is ``None``.
``seconds`` is the time the chunk computed, which the scheduler uses to size chunks.

Why a reader thread: the scheduler sends the next chunk while this worker computes the
current one (prefetch). If both the next chunk and the current result were larger than
a socket buffer, the scheduler would block sending while the worker blocks sending back:
a deadlock. The reader thread always drains the pipe into ``inbox``, so the scheduler's
send always completes, and the scheduler bounds how many chunks are in the inbox.

What can fail on the way back: a result or an exception that cannot be pickled is
replaced by ``MaybeEncodingError`` naming it, item by item, so the others still arrive.
The worker ignores SIGINT: Ctrl-C belongs to the parent, which stops the pool.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import deque

from plait._core import serialization
from plait.pool.errors import MaybeEncodingError, RemoteTraceback

__all__ = ["MAP", "STAR", "APPLY", "worker_main", "RemoteException"]

MAP, STAR, APPLY = 0, 1, 2
_FUNC_CACHE_SIZE = 64


class RemoteException:
    """An exception on its way from a worker, with its formatted traceback.

    Unpickled, it becomes the exception itself, with a ``RemoteTraceback`` as its
    ``__cause__`` (how ``multiprocessing.pool`` shows a worker's traceback).
    """

    def __init__(self, exc: BaseException, tb: str) -> None:
        self.exc = exc
        self.tb = tb

    def __reduce__(self):
        return _rebuild_exception, (self.exc, self.tb)


def _rebuild_exception(exc: BaseException, tb: str) -> BaseException:
    exc.__cause__ = RemoteTraceback(tb)
    return exc


def _remote(exc: BaseException) -> object:
    """``exc`` ready to be sent: with its traceback, or a picklable stand-in."""
    import traceback  # noqa: PLC0415 - only a failing task pays for it

    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    tb = f'\n"""\n{tb}"""'
    wrapped = RemoteException(exc, tb)
    try:  # an exception whose class cannot be rebuilt from its args fails on loads
        serialization.loads(serialization.dumps(wrapped))
    except Exception as why:
        return RemoteException(MaybeEncodingError(why, exc), tb)
    return wrapped


def _run(func, kind: int, items: list) -> tuple[list, list | None]:
    """Call ``func`` on every item; return (values, errors or None)."""
    if kind == APPLY:
        args, kwds = items[0]
        try:
            return [func(*args, **kwds)], None
        except Exception as exc:
            return [None], [(0, _remote(exc))]
    calls = map(func, items) if kind == MAP else _starmap(func, items)
    values: list = []
    errors = None
    while True:
        try:
            values.extend(calls)
            return values, errors
        except Exception as exc:
            if errors is None:
                errors = []
            errors.append((len(values), _remote(exc)))
            values.append(None)


def _starmap(func, items):
    from itertools import starmap  # noqa: PLC0415 - a builtin module

    return starmap(func, items)


def _reader(conn, inbox: deque, ready: threading.Semaphore) -> None:
    """Drain ``conn`` into ``inbox`` until the scheduler says exit or goes away."""
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            message = None
        except Exception as exc:  # a batch that cannot be unpickled here
            message = [("unpicklable", exc)]
        if message is None:
            inbox.append(None)
            ready.release()
            return
        inbox.extend(message)
        ready.release(len(message))


def _send(conn, chunk_id: int, values: list, errors: list | None, seconds: float) -> None:
    try:
        conn.send((chunk_id, values, errors, seconds))
        return
    except (EOFError, OSError):
        raise
    except Exception:
        pass
    # Something in the values does not pickle: find it, item by item.
    errors = list(errors or ())
    for i, value in enumerate(values):
        try:
            serialization.dumps(value)
        except Exception as why:
            values[i] = None
            errors.append((i, RemoteException(MaybeEncodingError(why, value), "")))
    conn.send((chunk_id, values, errors, seconds))


def worker_main(conn, initializer=None, initargs=(), maxtasks: int | None = None) -> None:
    """Run chunks from ``conn`` until told to exit, the pipe closes or ``maxtasks`` items ran."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)
    inbox: deque = deque()
    ready = threading.Semaphore(0)
    reader = threading.Thread(target=_reader, args=(conn, inbox, ready), daemon=True)
    reader.start()
    funcs: dict[bytes, object] = {}
    loads = serialization.loads
    clock = time.perf_counter
    done = 0
    while maxtasks is None or done < maxtasks:
        ready.acquire()
        message = inbox.popleft()
        if message is None:
            break
        if message[0] == "unpicklable":
            raise message[1]
        chunk_id, func_bytes, kind, items = message
        try:
            func = funcs.get(func_bytes)
            if func is None:
                if len(funcs) >= _FUNC_CACHE_SIZE:
                    funcs.clear()
                func = funcs[func_bytes] = loads(func_bytes)
        except Exception as exc:
            values, errors, seconds = [None] * len(items), None, 0.0
            errors = [(i, _remote(exc)) for i in range(len(items))]
        else:
            started = clock()
            values, errors = _run(func, kind, items)
            seconds = clock() - started
        done += len(items)
        try:
            _send(conn, chunk_id, values, errors, seconds)
        except (EOFError, OSError):
            break
