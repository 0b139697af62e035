"""The process engine: one scheduler thread that feeds workers and watches them die.

Theory of operation
-------------------
One thread in the parent, the scheduler, owns every worker's pipe end and sentinel and
does all the talking. Its loop:

    1. dispatch: while some worker has room, take chunks (``Engine.take_chunk``) and
       send them to it as one batch. A worker holds ``PREFETCH`` chunks, so it never
       waits for its next one; chunks whose measured cost is small (a ``chunksize=1``
       map of tiny tasks) are held up to ``MAX_INFLIGHT`` per worker, as long as their
       estimated work stays under ``BATCH_SECONDS``: one message then carries many
       chunks, and the parent, which is the bottleneck of tiny tasks, makes one system
       call for them all;
    2. sleep in one ``plait.ipc.wait`` on every worker's pipe, every worker's sentinel
       and the wake pipe, with the nearest per-task deadline as timeout;
    3. handle what woke it: results (all that are waiting on that pipe), deaths, new
       work, expired deadlines.

Nothing polls: a worker's death wakes the scheduler through its pidfd sentinel, a new
job through the wake pipe (written only when no wake-up is pending), a timeout through
``wait``'s timeout.

Never blocked by a worker
-------------------------
A worker's reader thread drains its pipe (``worker``), but it needs the GIL to do so, and
a task inside a long C call that holds the GIL keeps it from reading: a send that does
not fit the pipe would then block this thread, and with it ``terminate()``, every
deadline and every other worker, until the task returns. So a message goes to a busy
worker (one with chunks outstanding) only if it fits now: the scheduler pickles it
first (``_measure``; the pickle is what it sends), asks the kernel how much of the
socket's send buffer the records not read yet still take (``SIOCOUTQ``) and sends only
if the message fits in the rest (``_Worker.fits``). Otherwise its chunks go back to the
front of the line (a lone chunk keeps its pickle), where any worker with room takes
them, and that worker is ``full``: it gets nothing until it answers. A message goes to
an idle worker whatever its size: its reader is waiting for it, so the send takes as
long as the copy. The check costs one ``ioctl`` per message to a busy worker, and the
pickle is made once either way (``Connection.send`` would make it); a worker's pipe
holds megabytes, so small chunks always pass.

The crash-handling state machine, per worker:

- A worker runs its chunks in the order sent (``outstanding``, FIFO) and writes each
  chunk's id in its progress word before running it; its answers come in the same order,
  one by one or in batches (``worker``), and settle their chunks by id. A chunk whose
  measured cost is tiny is sent with ``hold``: the answers before it may wait in the
  worker while it runs (never behind a chunk that may be slow). When the worker's
  sentinel fires, the scheduler first reads every answer still in the pipe (the worker
  may have answered and then died), then reaps it for the exit code and reads the
  progress word: the chunk it names was running, and fails with
  ``WorkerLostError(pid, exitcode)``. The other chunks still without an answer go back
  to the front of the line (``retry``) and run on another worker: younger ones never
  started; older ones had finished, but their answers were waiting in the worker and
  died with it. Those (tiny tasks only, finished in the last ``worker.BATCH_SECONDS``
  before the death) are the one case where a task runs twice; a task is never lost,
  and only the one that was running fails. A worker that died before starting any of
  its chunks (an initializer that crashes) fails the oldest. A replacement worker starts
  after a short wait (a fork holds the GIL; the caller of the failed task runs first),
  a wait that doubles, up to a second, while workers keep dying by themselves before
  answering anything (an initializer that raises): no fork loop.
- A worker that reached its ``maxtasksperchild`` quota is sent no more chunks (a chunk
  is one task, as in the standard pool), exits on its own after its last result, and is
  replaced without counting as lost. So is one that said it is over its memory limit
  (``RETIRING``, after answering); the chunks it held but had not started go to the
  others, blaming none. One ``FAR_OVER`` its limit while busy (read every
  ``CHECK_SECONDS``, see ``memory``) is killed: its current chunk fails with a
  ``WorkerLostError`` naming the figures.
- With ``idle_timeout``, a worker idle that long while nothing waits is sent the exit
  message (``idle_exit``) and not replaced; workers start again when work comes.
- A chunk of a job with a per-task ``timeout`` is one item, is sent only to an idle
  worker, and nothing else is sent to that worker until it answers (so the deadline
  measures the task alone, and a kill costs no other task). At the deadline the worker
  is SIGKILLed, the task fails with ``TimeoutError``, and the death is handled as above.
  A soft deadline before it sends the worker ``SOFT_SIGNAL`` once (``worker``: the task
  gets ``SoftTimeoutError``); the worker stays exclusive until it answers.
- A job cancelled by its caller (``AsyncResult.cancel``) is resolved at once by the
  caller's thread, which wakes this one. Whenever the chunk a worker runs or runs next
  (as its progress word says) belongs to a cancelled job, the scheduler first reads the
  answers already in the pipe (the worker may have finished it), then, if it is still
  the worker's current chunk, SIGKILLs the worker. As after a timeout (``killed``), the
  killed chunk is settled and its worker's death is handled as above.
- ``close()``: when nothing is unsent, in flight, or still to be read from an ``imap``
  input, each worker gets the exit message and is reaped. ``terminate()``: every worker
  is killed and reaped, everything pending fails with ``PoolTerminatedError``.

Only this thread touches workers, chunks and pipes, so they need no lock; the engine's
lock guards what callers share with it (the job queue, jobs, statistics).
"""

from __future__ import annotations

import array
import fcntl
import os
import select
import signal
import socket
import sys
import termios
import threading
import time
from collections import deque
from concurrent.futures import CancelledError

from plait._core import segment, serialization
from plait._core.framing import SEGMENT_THRESHOLD
from plait.ipc import wait
from plait.pool.engine import CLOSE, RUN, TERMINATE, Engine
from plait.pool.errors import (
    MaybeEncodingError,
    PoolTerminatedError,
    TimeoutError,
    WorkerLostError,
)
from plait.pool.memory import CHECK_SECONDS, FAR_OVER, format_bytes, resident_bytes
from plait.pool.worker import MEMORY_REPORT, RETIRING, SOFT, SOFT_SIGNAL, UNREADABLE, nbytes

__all__ = ["ProcessEngine"]

PREFETCH = 2
MAX_INFLIGHT = 256
BATCH_SECONDS = 0.005
HOLD_SECONDS = 0.0005  # a chunk estimated under this may keep earlier answers waiting
HEAVY_BYTES = 1 << 20  # a chunk this big ends its message and goes out one at a time
_JOIN_SECONDS = 5.0
_YIELD_SECONDS = 0.005  # the wait before starting a replacement: lets the caller run
_KILLED = (-signal.SIGKILL, -signal.SIGTERM)
_MAX_BACKOFF = 1.0  # the longest wait before replacing workers that keep dying at once


class _Chunk:
    __slots__ = (
        "id",
        "job",
        "start",
        "items",
        "deadline",
        "soft_deadline",
        "estimate",
        "heavy",
        "message",
        "alone",
        "payload",
    )

    def __init__(self, chunk_id: int, job, start: int, items: list) -> None:
        self.id = chunk_id
        self.job = job
        self.start = start
        self.items = items
        self.deadline: float | None = None  # hard: the worker is killed
        self.soft_deadline: float | None = None  # the task is told, once (then None)
        # HEAVY_BYTES or more: it ends the message it travels in (see _dispatch).
        self.heavy = bool(items) and nbytes(items[0]) * len(items) >= HEAVY_BYTES
        # Its cost in seconds, or None: unknown, or too many bytes to hold many of.
        self.estimate: float | None = None if self.heavy else job.estimate(len(items))
        self.message = 0  # the id of the first chunk of the message it was sent in
        self.alone = False  # it travels in a message of its own (see _unreadable)
        self.payload: bytes | None = None  # its message, pickled, while it waits (_send)


def _measure(message: list) -> tuple[bytes | None, int | None]:
    """The pickle of ``message`` when it is all ``Connection.send`` would send of it (no
    out-of-band buffers), and how many bytes the message takes in the pipe (None: not
    known, the pickler needs ``Connection.send``'s help: a connection inside)."""
    try:
        payload, buffers = serialization.dumps_oob(message)
    except Exception:
        return None, None
    if not buffers:
        return payload, len(payload)
    size = len(payload) + sum(memoryview(b).nbytes for b in buffers)
    if size >= SEGMENT_THRESHOLD and segment.available():
        return None, 4096  # it travels in a shared-memory segment: the pipe takes its fd
    return None, size


def _what(chunk: _Chunk) -> str:
    """What a worker was running, for its ``WorkerLostError``."""
    n = len(chunk.items)
    return "task" if n == 1 else f"chunk of {n} tasks"


class _Worker:
    __slots__ = (
        "handle",
        "outstanding",
        "exclusive",
        "quota",
        "killed",
        "stopped",
        "estimated",
        "unknown",
        "poller",
        "answered",
        "retiring",
        "idle_since",
        "idle_exit",
        "full",
        "sndbuf",
        "unread",
    )

    def __init__(self, handle, quota: int | None) -> None:
        self.handle = handle
        self.outstanding: deque[_Chunk] = deque()
        self.exclusive = False  # running a timed task: nothing else is sent
        self.quota = quota  # chunks it may still be sent (maxtasksperchild)
        self.killed = False  # killed here (a deadline, a cancel): send it nothing more
        self.stopped = False  # its pipe broke: send it nothing more
        self.estimated = 0.0  # estimated seconds of its outstanding chunks...
        self.unknown = 0  # ...except these many, whose cost is not known yet
        self.answered = False  # it sent at least one answer
        self.retiring: int | None = None  # its resident bytes when it said it exits
        self.idle_since: float | None = None  # with an idle_timeout: idle from then on
        self.idle_exit = False  # told to exit after idle_timeout: not replaced
        self.full = False  # a message did not fit its pipe: it gets none until it answers
        fd = handle.conn.fileno()
        with socket.socket(fileno=os.dup(fd)) as sock:
            self.sndbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        self.unread = array.array("i", [0])  # filled by ioctl (see fits)
        # "Is another answer waiting?" after each one: a poll object made once, not
        # per call as Connection.poll makes it.
        self.poller = select.poll()
        self.poller.register(handle.conn.fileno(), select.POLLIN)

    def fits(self, size: int) -> bool:
        """Whether a message of ``size`` bytes goes into the pipe now without waiting
        for the worker to read: the memory the kernel charges for the records not read
        yet (``SIOCOUTQ``; a record costs up to a quarter more than its bytes, and a small
        one a page) stays within the socket's send buffer, where a send would block."""
        charge = size + size // 4 + 4096
        if charge > self.sndbuf:
            return False
        fcntl.ioctl(self.handle.conn.fileno(), termios.TIOCOUTQ, self.unread, True)
        return self.unread[0] + charge <= self.sndbuf

    def hold(self, chunk: _Chunk) -> None:
        self.outstanding.append(chunk)
        if chunk.estimate is None:
            self.unknown += 1
        else:
            self.estimated += chunk.estimate

    def settle(self, chunk_id: int | None) -> _Chunk | None:
        """Remove and return the outstanding chunk ``chunk_id`` (None: the oldest).

        None also when it is not outstanding: it was settled already (killed).
        """
        outstanding = self.outstanding
        if not outstanding:
            return None
        self.full = False  # it read what was sent before that answer
        if chunk_id is None or outstanding[0].id == chunk_id:
            chunk = outstanding.popleft()
        else:
            for chunk in outstanding:
                if chunk.id == chunk_id:
                    break
            else:
                return None
            outstanding.remove(chunk)
        if chunk.estimate is None:
            self.unknown -= 1
        else:
            self.estimated -= chunk.estimate
        return chunk

    def current(self) -> _Chunk | None:
        """The outstanding chunk the worker runs, or runs next, as its progress word says.

        (Older outstanding chunks have finished: their answers are on the way.)
        """
        started = abs(self.handle.started())
        for chunk in self.outstanding:
            if chunk.id >= started:
                return chunk
        return None

    def room(self, batched: int) -> bool:
        """Whether one more chunk may go to it, ``batched`` being already on their way."""
        if self.exclusive or self.quota == 0 or self.killed or self.stopped or self.full:
            return False
        if self.retiring is not None or self.idle_exit:
            return False
        n = len(self.outstanding) + batched
        if n < PREFETCH:
            return True
        return n < MAX_INFLIGHT and not self.unknown and self.estimated < BATCH_SECONDS


class ProcessEngine(Engine):
    """Run jobs on worker processes started by ``backend`` (see the module docstring)."""

    kills_workers = True
    stop_signal = signal.SIGKILL  # what terminate() sends the workers

    def __init__(
        self,
        backend,
        workers: int,
        maxtasks: int | None,
        memory_limit: int | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        super().__init__(workers)
        self._idle_timeout = idle_timeout
        self._backend = backend
        self._maxtasks = maxtasks
        self._memory_limit = memory_limit
        self._memory_check_at = 0.0
        self.fresh_rss: int | None = None  # a fresh worker's resident bytes, once known
        self.fresh_reported = threading.Event()
        self._workers: list[_Worker] = []
        self._retry: deque[_Chunk] = deque()
        self._chunk_ids = 0
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wake_pending = False
        self._waitables: list | None = None
        self._to_start = 0  # replacements owed
        self._start_at = 0.0  # not before this time (monotonic): see _on_death
        self._backoff = 0.0
        try:
            for _ in range(workers):
                self._start_worker()
        except BaseException:
            self._kill_all()
            for w in self._workers:
                w.handle.close()
            self._close_wake()
            backend.close()
            raise
        self._thread = threading.Thread(target=self._run, name="plait-pool-scheduler", daemon=True)
        self._thread.start()

    # -- callers' side --------------------------------------------------------------

    def wake(self) -> None:
        with self.lock:
            if not self._wake_pending:
                self._wake_pending = True
                try:
                    os.write(self._wake_w, b"!")
                except OSError:  # closed: the scheduler has ended
                    pass

    def join(self, timeout: float | None) -> bool:
        if threading.current_thread() is self._thread:
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def worker_names(self) -> tuple:
        return tuple(w.handle.pid for w in list(self._workers))

    def workers(self) -> list:
        return [w.handle.process for w in list(self._workers)]

    # -- the scheduler thread -------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException:
            sys.excepthook(*sys.exc_info())
            self.state = TERMINATE
        finally:
            self._shutdown()

    def _loop(self) -> None:
        wake_r = self._wake_r
        while True:
            state = self.state
            if state == TERMINATE:
                return
            if self._idle_timeout is not None:
                self._start_on_demand()
            self._dispatch()
            if state == CLOSE and self._finished():
                return
            timeout = self._next_deadline()
            if self._idle_timeout is not None:
                idle = self._stop_idle()
                if idle is not None:
                    timeout = idle if timeout is None else min(timeout, idle)
            if self._memory_limit is not None and any(w.outstanding for w in self._workers):
                timeout = CHECK_SECONDS if timeout is None else min(timeout, CHECK_SECONDS)
            if self._to_start:
                delay = max(_YIELD_SECONDS, self._start_at - time.monotonic())
                timeout = delay if timeout is None else min(timeout, delay)
            if self._waitables is None:
                self._waitables = self._make_waitables()
            ready = wait(self._waitables, timeout)
            deaths = []
            for obj in ready:
                if obj == wake_r:
                    with self.lock:
                        try:
                            os.read(wake_r, 512)
                        except BlockingIOError:
                            pass
                        self._wake_pending = False
                elif isinstance(obj, int):
                    deaths.append(obj)
                else:
                    self._receive(self._by_conn[obj])
            for sentinel in deaths:
                worker = self._by_sentinel.get(sentinel)
                if worker is not None:
                    self._on_death(worker)
            self._stop_cancelled()
            if timeout is not None:
                self._expire()
            if self._memory_limit is not None:
                self._check_memory()
            while self._to_start and self.state != TERMINATE and time.monotonic() >= self._start_at:
                self._to_start -= 1
                self._start_worker()

    def _make_waitables(self) -> list:
        self._by_conn = {w.handle.conn: w for w in self._workers}
        self._by_sentinel = {w.handle.sentinel: w for w in self._workers}
        return [self._wake_r, *self._by_conn, *self._by_sentinel]

    def _finished(self) -> bool:
        if self._retry or any(w.outstanding for w in self._workers):
            return False
        return not self.has_unsent()

    # -- sending --------------------------------------------------------------------

    def _dispatch(self) -> None:
        workers = self._workers
        count = len(workers)
        while True:
            best = None
            for w in workers:
                if w.room(0) and (best is None or len(w.outstanding) < len(best.outstanding)):
                    best = w
            if best is None:
                return
            batch: list[_Chunk] = []
            estimated, unknown = best.estimated, best.unknown
            while best.room(len(batch)):
                chunk = self._next_chunk(best, count, batch)
                if chunk is None:
                    break
                batch.append(chunk)
                if chunk.job.timed or chunk.heavy or chunk.alone:
                    # A timed task travels alone; a heavy chunk ends its message, and the next
                    # goes to the least busy worker: a worker starts on a chunk once
                    # the whole message is in, and the others wait while it is sent.
                    break
                if chunk.estimate is not None:  # counted while the batch grows
                    best.estimated += chunk.estimate
                else:
                    best.unknown += 1
            best.estimated, best.unknown = estimated, unknown  # hold() counts them again
            if not batch:
                return
            self._send(best, batch)

    def _next_chunk(self, worker: _Worker, count: int, batch: list) -> _Chunk | None:
        idle = not worker.outstanding and not batch
        if worker.quota is not None and worker.quota <= len(batch):  # counted when sent
            return None
        retry = self._retry
        while retry:
            chunk = retry[0]
            if chunk.job.done:
                retry.popleft()
                continue
            if (chunk.job.timed and not idle) or (chunk.alone and batch):
                return None
            return retry.popleft()
        taken = self.take_chunk(count, idle, None)
        if taken is None:
            return None
        self._chunk_ids += 1
        return _Chunk(self._chunk_ids, *taken)

    def _send(self, worker: _Worker, batch: list[_Chunk]) -> None:
        """Send ``batch`` to ``worker`` as one message, unless it is busy and the message
        does not fit its pipe: then the batch goes back to the front of the line and the
        worker gets nothing more until it answers (see "Never blocked by a worker")."""
        message = [
            (
                c.id,
                c.job.func_bytes,
                c.job.kind if c.job.soft_timeout is None else c.job.kind | SOFT,
                c.items,
                c.estimate is not None and c.estimate < HOLD_SECONDS,
            )
            for c in batch
        ]
        payload = batch[0].payload if len(batch) == 1 else None
        if payload is not None:
            size: int | None = len(payload)
        else:
            payload, size = _measure(message)
        if worker.outstanding and (size is None or not worker.fits(size)):
            worker.full = True
            if len(batch) == 1:
                batch[0].payload = payload  # not pickled again when it goes
            self._retry.extendleft(reversed(batch))
            return
        conn = worker.handle.conn
        try:
            if payload is None:
                conn.send(message)
            else:
                conn.send_bytes(payload)
        except (BrokenPipeError, ConnectionError, EOFError):
            # The worker is dying; its sentinel will tell. The batch never reached it.
            self._retry.extendleft(reversed(batch))
            worker.stopped = True
            return
        except Exception as exc:  # some arguments cannot be pickled
            if len(batch) > 1:
                for chunk in batch:  # find the chunk that fails; send the others
                    self._send(worker, [chunk])
                return
            self._fail(batch[0], exc)
            return
        for chunk in batch:
            chunk.message = batch[0].id
            chunk.payload = None
            worker.hold(chunk)
            if worker.quota is not None:
                worker.quota -= 1
            job = chunk.job
            if job.timed:
                worker.exclusive = True
                now = time.monotonic()
                if job.timeout is not None:
                    chunk.deadline = now + job.timeout
                if job.soft_timeout is not None:
                    chunk.soft_deadline = now + job.soft_timeout

    # -- receiving ------------------------------------------------------------------

    def _receive(self, worker: _Worker) -> None:
        """Read every answer waiting in ``worker``'s pipe and settle their chunks."""
        conn = worker.handle.conn
        # Read them all, then settle them together: the callers woken by the first do
        # not take the GIL between this thread's reads.
        answers: list = []
        loads = serialization.loads
        while True:  # at least one message: the pipe is readable
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break  # the worker is gone: its sentinel fires next
            except Exception as exc:
                # A single answer that does not unpickle here: it answers the oldest
                # chunk not answered yet (a batch always unpickles: its answers are bytes).
                answers.append((None, None, exc, 0.0))
            else:
                if type(message) is tuple:
                    if message[0] == UNREADABLE:  # after the answers before it
                        self._answer(worker, answers)
                        answers = []
                        try:
                            error = loads(message[1])
                        except Exception as exc:
                            error = MaybeEncodingError(exc, "the error of an unreadable message")
                        self._unreadable(worker, error)
                    elif message[0] < 0:  # a notice, not an answer
                        self._notice(worker, message[0], message[1])
                    else:
                        answers.append(message)
                else:
                    for chunk_id, data in message:
                        try:
                            answers.append((chunk_id, *loads(data)))
                        except Exception as exc:
                            answers.append((chunk_id, None, exc, 0.0))
            if len(answers) >= len(worker.outstanding) or not worker.poller.poll(0):
                break
        self._answer(worker, answers)

    def _answer(self, worker: _Worker, answers: list) -> None:
        if answers:
            with self.lock:
                self._settle(worker, answers)
            self.run_deferred()

    def _unreadable(self, worker: _Worker, error: BaseException) -> None:
        """The worker could not unpickle its oldest message without an answer: ``error``.

        One chunk alone in it fails with ``error``; several go back to the front of the
        line, each to travel in a message of its own, so that only the culprit fails. They
        count for no quota: none ran.
        """
        worker.answered = True
        outstanding = worker.outstanding
        if not outstanding:
            return  # settled already: its worker was killed
        message = outstanding[0].message
        chunks = []
        while outstanding and outstanding[0].message == message:
            chunk = worker.settle(outstanding[0].id)
            chunks.append(chunk)
            if worker.quota is not None:
                worker.quota += 1
            if chunk.job.timed:
                worker.exclusive = False
        if len(chunks) == 1:
            self._fail(chunks[0], error)
            return
        for chunk in chunks:
            chunk.alone = True
        self._retry.extendleft(reversed(chunks))

    def _settle(self, worker: _Worker, answers: list) -> None:
        """Hand ``answers`` to their jobs; consecutive chunks of one job as one outcome."""
        worker.answered = True
        pid = worker.handle.pid
        run = None  # [job, start, values, errors, seconds] of the chunks merged so far
        busy = 0.0
        for chunk_id, values, errors, seconds in answers:
            chunk = worker.settle(chunk_id)
            if chunk is None:
                continue  # settled already: its worker was killed
            busy += seconds
            if chunk.job.timed:
                worker.exclusive = False
            n = len(chunk.items)
            if values is None:  # it did not unpickle: errors is why
                error = MaybeEncodingError(errors, f"the answer to chunk {chunk.id}")
                values, errors = [None] * n, [(i, error) for i in range(n)]
            if run is not None and run[0] is chunk.job and run[1] + len(run[2]) == chunk.start:
                if errors:
                    offset = len(run[2])
                    run[3] = (run[3] or []) + [(i + offset, e) for i, e in errors]
                run[2].extend(values)
                run[4] += seconds
                continue
            if run is not None:
                self.outcome(*run)
            run = [chunk.job, chunk.start, values, errors, seconds]
        if run is not None:
            self.outcome(*run)
        self.busy[pid] = self.busy.get(pid, 0.0) + busy

    def _notice(self, worker: _Worker, notice: int, rss: int) -> None:
        """A worker's notice (see ``worker``): its fresh resident set, or its retirement."""
        if notice == MEMORY_REPORT:
            if self.fresh_rss is None:
                self.fresh_rss = rss
                self.fresh_reported.set()
        elif notice == RETIRING:
            worker.retiring = rss

    def _check_memory(self) -> None:
        """Kill each busy worker ``FAR_OVER`` times past the memory limit (``memory``)."""
        now = time.monotonic()
        if now < self._memory_check_at:
            return
        self._memory_check_at = now + CHECK_SECONDS
        limit = self._memory_limit
        for w in self._workers:
            if w.killed or not w.outstanding or w.retiring is not None:
                continue
            if w.handle.started() <= 0:
                continue  # between tasks: over the limit, it retires by itself once answered
            rss = resident_bytes(w.handle.pid)
            if rss is None or rss <= FAR_OVER * limit:
                continue
            chunk = w.current()
            self._kill(w)
            if chunk is None:
                continue
            w.settle(chunk.id)
            reason = (
                f"was killed by the pool at {format_bytes(rss)} resident, over {FAR_OVER}x "
                f"its max_memory_per_child of {format_bytes(limit)}"
            )
            lost = WorkerLostError(w.handle.pid, -signal.SIGKILL, _what(chunk), reason)
            self._fail(chunk, lost)

    def _kill(self, w: _Worker) -> None:
        """Kill ``w`` for its task (a deadline, a cancel, its memory); it is replaced.

        Counted as replaced now, before its caller is told: ``stats()`` read right after
        the task's error then already shows it."""
        w.handle.kill()
        w.killed = True
        with self.lock:
            self.workers_replaced += 1

    def _fail(self, chunk: _Chunk, exc: BaseException) -> None:
        n = len(chunk.items)
        self.outcome(chunk.job, chunk.start, [None] * n, [(i, exc) for i in range(n)], 0.0)

    def _stop_cancelled(self) -> None:
        """Kill each worker that runs a chunk of a cancelled job (see the module docstring)."""
        if not self.cancelled_any:
            return
        for w in self._workers:
            if w.killed or not w.outstanding:
                continue
            chunk = w.current()
            if chunk is None or not chunk.job.cancel_requested:
                continue
            if w.poller.poll(0):
                self._receive(w)  # it may have answered the cancelled chunk already
                chunk = w.current()
                if chunk is None or not chunk.job.cancel_requested:
                    continue
            self._kill(w)
            w.settle(chunk.id)
            self._fail(
                chunk,
                CancelledError(f"job {chunk.job.id} cancelled; worker {w.handle.pid} was killed"),
            )

    def _on_death(self, worker: _Worker) -> None:
        handle = worker.handle
        if worker.outstanding:
            self._receive(worker)  # what it answered before it died
        exitcode = handle.reap(_JOIN_SECONDS)
        started = abs(handle.started())  # finished or not, its answer did not arrive
        retired = worker.quota == 0 and not worker.outstanding and not worker.killed
        retired = retired or (worker.retiring is not None and not worker.killed)
        retired = retired or worker.idle_exit
        rerun = list(worker.outstanding)
        worker.outstanding.clear()
        lost = [c for c in rerun if c.id == started and worker.retiring is None]
        if not lost and rerun and rerun[0].id > started and not retired and not worker.killed:
            lost.append(rerun[0])  # it died before starting any: the oldest is to blame
        for chunk in lost:
            rerun.remove(chunk)
            self._fail(chunk, WorkerLostError(handle.pid, exitcode, _what(chunk)))
        self._retry.extendleft(reversed(rerun))  # another worker runs them
        self._workers.remove(worker)
        self._waitables = None
        handle.close()
        if self.state == TERMINATE or worker.idle_exit:
            return  # an idle worker is started again on demand (_start_on_demand)
        if not retired and not worker.killed:  # one killed here is counted by _kill
            with self.lock:
                self.workers_replaced += 1
        if self.state == RUN or not self._finished():
            # Started on the next turn of the loop, after a wait that releases the GIL:
            # the caller woken by the failure above gets it first, not after a fork.
            self._to_start += 1
            # A worker that died by itself before answering anything (its initializer
            # raised or crashed) would be replaced in a tight loop: wait longer each
            # time. One killed from outside (SIGKILL, SIGTERM) is replaced at once.
            if worker.answered or worker.killed or exitcode in _KILLED:
                self._backoff = 0.0
            else:
                self._backoff = min(_MAX_BACKOFF, max(_YIELD_SECONDS, self._backoff * 2))
            self._start_at = time.monotonic() + self._backoff

    # -- idle workers (idle_timeout) ------------------------------------------------

    def _stop_idle(self) -> float | None:
        """Tell workers idle for ``idle_timeout`` to exit; seconds until the next expires."""
        now = time.monotonic()
        soonest = None
        busy = None  # computed once, if some worker expires
        for w in self._workers:
            if w.outstanding or w.killed or w.stopped or w.idle_exit or w.retiring is not None:
                w.idle_since = None
                continue
            if w.idle_since is None:
                w.idle_since = now
            expires = w.idle_since + self._idle_timeout
            if expires > now:
                soonest = expires if soonest is None else min(soonest, expires)
                continue
            if busy is None:
                busy = bool(self._retry) or self.has_unsent()
            if busy:
                continue
            w.idle_exit = True
            try:
                w.handle.conn.send(None)  # "exit now": its sentinel fires, _on_death
            except OSError:
                w.handle.kill()
        return None if soonest is None else max(0.0, soonest - now)

    def _start_on_demand(self) -> None:
        """Start the workers that exited idle again, once there is work for them."""
        live = sum(1 for w in self._workers if not w.idle_exit)
        missing = self.workers_wanted - live - self._to_start
        if missing > 0 and self.state in (RUN, CLOSE) and (self._retry or self.has_unsent()):
            for _ in range(missing):
                self._start_worker()

    def _start_worker(self) -> None:
        handle = self._backend.start_worker()
        self._workers.append(_Worker(handle, self._maxtasks))
        self._waitables = None

    # -- deadlines ------------------------------------------------------------------

    def _next_deadline(self) -> float | None:
        deadline = None
        for w in self._workers:
            if w.exclusive and w.outstanding:
                chunk = w.outstanding[0]
                for d in (chunk.deadline, chunk.soft_deadline):
                    if d is not None and (deadline is None or d < deadline):
                        deadline = d
        if deadline is None:
            return None
        return max(0.0, deadline - time.monotonic())

    def _expire(self) -> None:
        now = time.monotonic()
        for w in self._workers:
            if not (w.exclusive and w.outstanding) or w.killed:
                continue
            chunk = w.outstanding[0]
            if chunk.soft_deadline is not None and chunk.soft_deadline <= now:
                chunk.soft_deadline = None
                w.handle.signal(SOFT_SIGNAL)  # the worker raises SoftTimeoutError in it
            if chunk.deadline is None or chunk.deadline > now:
                continue
            self._kill(w)
            w.settle(chunk.id)
            exc = TimeoutError(
                f"task {chunk.start} of job {chunk.job.id} ran over its timeout of "
                f"{chunk.job.timeout} s; worker {w.handle.pid} was killed"
            )
            self.outcome(chunk.job, chunk.start, [None], [(0, exc)], 0.0)

    # -- the end --------------------------------------------------------------------

    def _shutdown(self) -> None:
        if self.state == TERMINATE:
            self._kill_all()
        else:
            for w in self._workers:
                try:
                    w.handle.conn.send(None)
                except OSError:
                    w.handle.kill()
            for w in self._workers:
                if w.handle.reap(_JOIN_SECONDS) is None:
                    w.handle.kill()
        exc = PoolTerminatedError("pool terminated before the task finished")
        for w in self._workers:
            for chunk in w.outstanding:
                self._fail(chunk, exc)
            w.handle.close()
        self._workers.clear()
        for chunk in self._retry:
            self._fail(chunk, exc)
        self._retry.clear()
        self.fail_pending(exc)
        self._close_wake()
        self._backend.close()

    def _kill_all(self) -> None:
        for w in self._workers:
            if self.stop_signal == signal.SIGKILL:
                w.handle.kill()
            else:
                w.handle.signal(self.stop_signal)
        for w in self._workers:
            w.handle.reap(_JOIN_SECONDS)

    def _close_wake(self) -> None:
        with self.lock:
            self._wake_pending = True  # nobody writes any more
            os.close(self._wake_r)
            os.close(self._wake_w)
