"""The worker: the loop a pool's process runs, and how its answers travel back.

Theory of operation
-------------------
A worker owns one end of a ``Pipe``; the pool's scheduler owns the other. Messages are:

    scheduler -> worker   [(chunk_id, func, kind, items, hold), ...]   or None: "exit now"
    worker -> scheduler   (chunk_id, values, errors, seconds)      one answer
                          [(chunk_id, answer_bytes), ...]          a batch of answers
                          (notice, value, None, 0.0)               a notice (notice < 0)

The scheduler sends chunks in batches (one message, one system call, for many small
chunks), and the worker answers in batches too: a chunk's answer waits while the next
chunk, already in the inbox, is one the scheduler measured as tiny (``hold``), up to
``BATCH_ANSWERS`` answers or ``BATCH_SECONDS`` after the first one waiting. Tiny tasks
then cost the parent one message per batch, not per chunk, and no answer ever waits
behind a task that may be slow, or in an idle worker. A batch carries each answer
pickled on its own, beside its chunk id, so an answer the parent cannot unpickle fails
its own chunk only. A big answer (``BIG_ANSWER`` bytes, as ``nbytes`` of its first
value says) always travels alone, as a tuple whose buffers go out of band.

Batching keeps every task accounted for with the *progress word*: a shared
``c_longlong`` (``plait.ipc.sharedctypes.RawValue``) in which the worker writes the id of
each chunk before it runs it. When the worker dies, the scheduler reads every answer
that reached the pipe, then the word: the chunk it names was running and fails with
``WorkerLostError``; the others without an answer run again on another worker (see
``scheduler``).

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
send always completes, and the scheduler bounds how many chunks are in the inbox. (A
task that holds the GIL in a long C call stops the reader too: the scheduler then sends
a busy worker only what fits its pipe, see ``scheduler``.)

A message that does not unpickle here (an argument whose class the worker cannot
import, a ``__reduce__`` that raises on this side) fails none of the chunks before it or
after it, and the worker stays: it answers the answers waiting, then the notice
``UNREADABLE`` with the error, pickled on its own as a batch's answers are (its
traceback says where unpickling failed). The
scheduler knows which chunks that message carried (the oldest ones without an answer):
one alone fails with that error; several are sent again one per message, so that the
one whose arguments do not unpickle fails alone. Such a message counts for no chunk of
``maxtasks``: none ran.

Soft timeouts: a task with a soft timeout runs alone on its worker (as every timed task,
see ``scheduler``), with ``SOFT`` in its kind. At the soft deadline the scheduler sends
the worker ``SOFT_SIGNAL``; its handler raises ``SoftTimeoutError`` in the main thread,
which runs the task, if the task is still running (``_soft.armed``, set just around the
call); a signal that arrives after the task returned does nothing. The task may catch
the error and return; one that does not fails with it. Python runs a signal handler
between bytecodes and when a blocking system call is interrupted (``time.sleep``,
reading a socket): a task inside C code that never returns to the interpreter (a long
numpy or BLAS call, a C extension's loop) gets the error only when that call returns,
and if the hard deadline comes first the worker is killed as for any hard timeout.

What can fail on the way back: a result or an exception that cannot be pickled is
replaced by ``MaybeEncodingError`` naming it, item by item, so the others still arrive.
The worker ignores SIGINT: Ctrl-C belongs to the parent, which stops the pool.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import deque

from plait._core import serialization
from plait.pool.memory import resident_bytes

__all__ = [
    "APPLY",
    "CPU_SHARE_ENV",
    "MAP",
    "MEMORY_REPORT",
    "RETIRING",
    "SOFT",
    "SOFT_SIGNAL",
    "STAR",
    "UNREADABLE",
    "ExceptionWithTraceback",
    "RemoteException",
    "mapstar",
    "may_start_processes",
    "set_environment",
    "nbytes",
    "rebuild_exc",
    "starmapstar",
    "worker",
    "worker_main",
]

MAP, STAR, APPLY = 0, 1, 2
SOFT = 4  # or-ed into a chunk's kind: its task has a soft timeout (see "Soft timeouts")
SOFT_SIGNAL = signal.SIGUSR1  # what the scheduler sends at a task's soft deadline
# Notices, sent as answers with these chunk ids: (notice, resident bytes, None, 0.0).
MEMORY_REPORT = -1  # a fresh worker's resident set (when the pool has a memory limit)
RETIRING = -2  # over the memory limit after a task: this worker exits now
UNREADABLE = -3  # a message did not unpickle here: (UNREADABLE, error_bytes, None, 0.0)
# In a worker: how many CPUs a pool made there uses by default (its share of the machine).
CPU_SHARE_ENV = "PLAIT_CPU_SHARE"
_FUNC_CACHE_SIZE = 64
BATCH_ANSWERS = 64
BATCH_SECONDS = 0.001
BIG_ANSWER = 64 << 10


# The errors module is imported where an error is made, not here: it costs a worker
# that never fails ~20 ms of imports at every start (spawn, forkserver).


class RemoteException:
    """An exception on its way from a worker, with its formatted traceback ``tb``.

    Unpickled, it becomes the exception itself, with a ``RemoteTraceback`` as its
    ``__cause__`` (how ``multiprocessing.pool`` shows a worker's traceback).
    """

    def __init__(self, exc: BaseException, tb: str) -> None:
        self.exc = exc
        self.tb = tb

    def __reduce__(self):
        return rebuild_exc, (self.exc, self.tb)


class ExceptionWithTraceback(RemoteException):
    """``multiprocessing.pool.ExceptionWithTraceback``: ``exc`` and its traceback object
    ``tb``, formatted here, so that it travels as text."""

    def __init__(self, exc: BaseException, tb) -> None:
        import traceback  # noqa: PLC0415 - only a failing task pays for it

        text = "".join(traceback.format_exception(type(exc), exc, tb))
        super().__init__(exc, f'\n"""\n{text}"""')


def rebuild_exc(exc: BaseException, tb: str) -> BaseException:
    """``exc`` with a ``RemoteTraceback(tb)`` as its cause (``multiprocessing.pool``'s name)."""
    from plait.pool.errors import RemoteTraceback  # noqa: PLC0415 - see above

    exc.__cause__ = RemoteTraceback(tb)
    return exc


def _remote(exc: BaseException, context: str = "") -> RemoteException:
    """``exc`` ready to be sent: with its traceback (after ``context``, a line saying
    where it happened), or a picklable stand-in."""
    wrapped: RemoteException = ExceptionWithTraceback(exc, exc.__traceback__)
    if context:
        wrapped = RemoteException(exc, f"\n{context}{wrapped.tb}")
    try:  # an exception whose class cannot be rebuilt from its args fails on loads
        serialization.loads(serialization.dumps(wrapped))
    except Exception as why:
        from plait.pool.errors import MaybeEncodingError  # noqa: PLC0415 - see above

        return RemoteException(MaybeEncodingError(why, exc), wrapped.tb)
    return wrapped


class _Soft:
    """Whether the running task may get ``SoftTimeoutError`` (see "Soft timeouts")."""

    armed = False
    error: type | None = None  # SoftTimeoutError, imported before the first soft task


_soft = _Soft()


def _on_soft_timeout(signum, frame) -> None:
    if _soft.armed:
        _soft.armed = False
        raise _soft.error("the task ran past its soft timeout")


def _run_soft(func, kind: int, items: list) -> tuple[list, list | None]:
    """``_run`` of a task with a soft timeout: ``SoftTimeoutError`` may be raised in it."""
    if _soft.error is None:
        from plait.pool.errors import SoftTimeoutError  # noqa: PLC0415 - see above

        _soft.error = SoftTimeoutError
    _soft.armed = True
    try:
        outcome = _run(func, kind, items)
        _soft.armed = False
    except _soft.error as exc:
        # It came after the task returned, before the line above (the handler disarms
        # itself, so it comes once): the deadline passed as it returned; it fails.
        return [None] * len(items), [(i, _remote(exc)) for i in range(len(items))]
    return outcome


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


def mapstar(args: tuple) -> list:
    """``multiprocessing.pool.mapstar``: ``list(map(func, items))`` for ``(func, items)``."""
    return list(map(*args))


def starmapstar(args: tuple) -> list:
    """``multiprocessing.pool.starmapstar``: ``func(*item)`` for each item of ``(func, items)``."""
    return list(_starmap(args[0], args[1]))


def worker(inqueue, outqueue, initializer=None, initargs=(), maxtasks=None, wrap_exception=False):
    """``multiprocessing.pool.worker``, the standard pool's process loop: not plait's.

    Raises ``NotImplementedError``: plait's workers read chunks from a pipe of their own
    (``worker_main``), not tasks from the standard pool's queues.
    """
    raise NotImplementedError(
        "multiprocessing.pool.worker is the loop of the standard pool's processes over its "
        "task queues; plait's pool runs its own workers (plait.pool.worker.worker_main): "
        "use plait.multiprocessing.Pool to run tasks"
    )


def _reader(conn, inbox: deque, ready: threading.Semaphore) -> None:
    """Drain ``conn`` into ``inbox`` until the scheduler says exit or goes away."""
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            message = None
        except Exception as exc:  # a message that cannot be unpickled here
            message = [(UNREADABLE, exc)]
        if message is None:
            inbox.append(None)
            ready.release()
            return
        inbox.extend(message)
        ready.release(len(message))


def _picklable(values: list, errors: list | None) -> list:
    """Replace each value that does not pickle by ``None`` and a ``MaybeEncodingError``."""
    from plait.pool.errors import MaybeEncodingError  # noqa: PLC0415 - see above

    errors = list(errors or ())
    for i, value in enumerate(values):
        try:
            serialization.dumps(value)
        except Exception as why:
            values[i] = None
            errors.append((i, RemoteException(MaybeEncodingError(why, value), "")))
    return errors


def _send(conn, answers: list) -> None:
    """Send ``answers``, ``[(chunk_id, values, errors, seconds), ...]``, as one message."""
    if len(answers) == 1:
        answer = answers[0]
        try:
            conn.send(answer)
            return
        except (EOFError, OSError):
            raise
        except Exception:  # something in the values does not pickle: find it
            chunk_id, values, errors, seconds = answer
            conn.send((chunk_id, values, _picklable(values, errors), seconds))
            return
    batch = []
    dumps = serialization.dumps
    for chunk_id, values, errors, seconds in answers:
        try:
            data = dumps((values, errors, seconds))
        except Exception:
            data = dumps((values, _picklable(values, errors), seconds))
        batch.append((chunk_id, data))
    conn.send(batch)


_SCALARS = frozenset({int, float, bool, complex, type(None)})
_SHALLOW = 16  # longer tuples and lists count as their own size: no walk per item


def nbytes(value: object, _depth: int = 2) -> int:
    """Roughly how many bytes ``value`` takes to send: a buffer's length, else its size;
    a tuple or list counts what it holds, two levels down (a ``starmap`` item, an
    ``apply``'s ``(args, kwds)``, a result such as ``(array, info)``).

    (``sys.getsizeof`` alone misses the data of an array that views memory it does not
    own: a row of a 2-d array, an array unpickled from a received buffer.)
    """
    kind = type(value)
    if kind in _SCALARS:
        return 0
    if (kind is tuple or kind is list) and _depth and len(value) <= _SHALLOW:
        return sys.getsizeof(value) + sum(nbytes(v, _depth - 1) for v in value)
    try:
        return memoryview(value).nbytes
    except TypeError:
        return sys.getsizeof(value)


def _is_big(values: list) -> bool:
    return bool(values) and nbytes(values[0]) >= BIG_ANSWER


def set_environment(env: dict, thread_cap: int | None) -> None:
    """Set the worker's environment, and cap the BLAS/OpenMP pools loaded already.

    The thread variables in ``env`` reach libraries loaded from now on. A worker forked
    from a parent that had loaded numpy has its BLAS pool already: ``threadpoolctl``, if
    installed, caps it to ``thread_cap`` threads.
    """
    os.environ.update(env)
    if thread_cap is not None and "numpy" in sys.modules:
        try:
            from threadpoolctl import threadpool_limits  # noqa: PLC0415 - optional
        except ImportError:
            return
        threadpool_limits(thread_cap)


def may_start_processes(cpu_share: int) -> None:
    """Let this worker's tasks start processes and pools (see ``worker_main``)."""
    from plait.process import current_process, lifeline  # noqa: PLC0415 - loaded already

    current_process().daemon = False  # a daemon may not have children
    lifeline.tie_every_child = True  # ...but they all die with it, as if it were one
    os.environ[CPU_SHARE_ENV] = str(cpu_share)


def worker_main(
    conn,
    progress,
    initializer=None,
    initargs=(),
    maxtasks: int | None = None,
    cpu_share: int = 1,
    env: dict | None = None,
    thread_cap: int | None = None,
    memory_limit: int | None = None,
) -> None:
    """Run chunks from ``conn`` until told to exit, the pipe closes or ``maxtasks`` chunks ran
    (a chunk is one task, as in the standard pool).

    ``progress`` is the shared word in which the id of each chunk is written before it runs.
    The worker started as a daemon (it dies with the pool's process, see
    ``plait.process.lifeline``) and then lets its tasks start processes and pools: every
    child it starts, daemon or not, is tied to it the same way, and a pool made here
    defaults to ``cpu_share`` workers (``CPU_SHARE_ENV``), its share of the CPUs.
    ``env`` is set in its environment before the initializer runs, and BLAS/OpenMP pools
    it holds already are capped to ``thread_cap`` threads (``set_environment``).
    With a ``memory_limit`` (bytes) it reports its resident set once started and exits
    after a task that leaves it over the limit (``plait.pool.memory``).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _soft.armed = False  # a worker forked inside a soft-timed task inherits the flag
    # At start, not with the first soft task: the signal may come while the worker still
    # loads that task's function. It replaces a SIGUSR1 handler the worker inherited.
    signal.signal(SOFT_SIGNAL, _on_soft_timeout)
    may_start_processes(cpu_share)
    if env or thread_cap is not None:
        set_environment(env or {}, thread_cap)
    if initializer is not None:
        initializer(*initargs)
    if memory_limit is not None:
        conn.send((MEMORY_REPORT, resident_bytes(), None, 0.0))
    inbox: deque = deque()
    ready = threading.Semaphore(0)
    reader = threading.Thread(target=_reader, args=(conn, inbox, ready), daemon=True)
    reader.start()
    funcs: dict[bytes, object] = {}
    loads = serialization.loads
    clock = time.perf_counter
    done = 0
    waiting: list = []  # answers not sent yet
    flush_at = 0.0
    try:
        while maxtasks is None or done < maxtasks:
            if waiting and not inbox:  # nothing to run next: answer now
                _send(conn, waiting)
                waiting = []
            ready.acquire()
            message = inbox.popleft()
            if message is None:
                break
            if message[0] == UNREADABLE:  # answer what ran before it first
                if waiting:
                    _send(conn, waiting)
                    waiting = []
                context = f"(the arguments sent to worker {os.getpid()} did not unpickle there)"
                error = serialization.dumps(_remote(message[1], context))
                conn.send((UNREADABLE, error, None, 0.0))
                continue
            chunk_id, func_bytes, kind, items, hold = message
            if waiting and (not hold or len(waiting) >= BATCH_ANSWERS or clock() >= flush_at):
                _send(conn, waiting)
                waiting = []
            progress.value = chunk_id
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
                if kind & SOFT:
                    values, errors = _run_soft(func, kind & ~SOFT, items)
                else:
                    values, errors = _run(func, kind, items)
                seconds = clock() - started
            progress.value = -chunk_id  # finished: its answer is on the way
            done += 1
            if _is_big(values):
                if waiting:
                    _send(conn, waiting)
                    waiting = []
                _send(conn, [(chunk_id, values, errors, seconds)])
            else:
                if not waiting:
                    flush_at = clock() + BATCH_SECONDS
                waiting.append((chunk_id, values, errors, seconds))
            del values, errors  # not counted in the resident set below
            if memory_limit is not None:
                rss = resident_bytes()
                if rss is not None and rss > memory_limit:
                    if waiting:
                        _send(conn, waiting)
                        waiting = []
                    conn.send((RETIRING, rss, None, 0.0))
                    break
        if waiting:
            _send(conn, waiting)
    except (EOFError, OSError):
        pass  # the scheduler is gone
