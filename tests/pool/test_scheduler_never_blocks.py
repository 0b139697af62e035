"""The scheduler is never held up by one worker, and a message a worker cannot read fails
only its own task.

A task inside a long C call that holds the GIL (``hold_gil``: libc's ``pause`` called
through ``ctypes.PyDLL``, which keeps the GIL) stops its worker from reading its pipe,
while a big chunk waits to be sent to it. ``terminate()``, another worker's deadline and
another worker's death must all be handled while that task still runs; it writes a file
when it is let go (``SIGUSR2``), so the tests see that it had not ended.
"""

from __future__ import annotations

import functools
import multiprocessing.pool
import os
import signal
import threading
from pathlib import Path

import pytest

import plait.multiprocessing.pool
from plait.pool import Pool, TimeoutError, WorkerLostError
from tests.pool import tasks
from tests.support import outcomes_of, wait_until

FACES = [
    pytest.param(multiprocessing.pool, id="multiprocessing"),
    pytest.param(plait.multiprocessing.pool, id="plait"),
]
# Larger than any pipe's send buffer (plait asks for 2 MiB, which the kernel doubles), and
# pickled in-band: it cannot be in the pipe while the worker does not read.
BIG = b"x" * (16 << 20)


def hold_gil(data, started, done):
    """The first call holds the GIL until its worker gets SIGUSR2; the others return."""
    import ctypes  # noqa: PLC0415 - only in the worker

    if os.path.exists(started):
        return len(data)
    signal.signal(signal.SIGUSR2, lambda signum, frame: None)  # ends the pause below
    Path(started).write_text(str(os.getpid()))
    ctypes.PyDLL(None).pause()  # in C, the GIL held, until a signal
    Path(done).touch()
    return len(data)


class GilHolder:
    """A map of big items whose first task holds its worker's GIL (``hold_gil``)."""

    def __init__(self, pool, tmp_path: Path) -> None:
        self.started = tmp_path / "started"
        self.done = tmp_path / "done"
        args = [(BIG, str(self.started), str(self.done))] * 3
        self.result = pool.starmap_async(hold_gil, args, chunksize=1)
        assert wait_until(lambda: self.started.exists() and self.started.read_text(), 30)
        self.pid = int(self.started.read_text())

    def release(self) -> None:
        try:
            os.kill(self.pid, signal.SIGUSR2)
        except ProcessLookupError:
            pass


@pytest.mark.timeout(120)
@pytest.mark.parametrize("face", FACES)
def test_terminate_returns_while_a_task_holds_the_gil_and_a_big_chunk_waits(
    face, tmp_path, request
):
    if face is plait.multiprocessing.pool:
        request.getfixturevalue("no_leaks")
    pool = face.Pool(1)
    holder = GilHolder(pool, tmp_path)
    stopper = threading.Thread(target=pool.terminate, daemon=True)
    stopper.start()
    stopper.join(30)
    returned = not stopper.is_alive()
    if not returned:
        holder.release()  # let it end, so that the test fails instead of hanging
        stopper.join(60)
    assert returned, "terminate() waited for the task that holds the GIL"
    assert not holder.done.exists()
    pool.join()


def ready_while_the_gil_is_held(pool, tmp_path: Path, result, act=lambda: None) -> bool:
    """Whether ``result`` became ready (after ``act()``) while another worker's task
    still held its GIL; that task is then let go and must finish."""
    holder = GilHolder(pool, tmp_path)
    act()
    result.wait(30)
    ready, still_held = result.ready(), not holder.done.exists()
    holder.release()
    assert holder.result.get(60) == [len(BIG)] * 3
    return ready and still_held


def started_task(pool, tmp_path: Path, **options):
    """A task that reports its worker's pid, then sleeps a minute; and that pid."""
    pid_file = tmp_path / "pid"
    result = pool.apply_async(tasks.report_pid_and_sleep, (str(pid_file), 60), **options)
    assert wait_until(lambda: pid_file.exists() and pid_file.read_text(), 30)
    return result, int(pid_file.read_text())


@pytest.mark.timeout(120)
def test_a_deadline_fires_while_another_worker_holds_the_gil(tmp_path, no_leaks):
    with Pool(2) as pool:
        timed, _ = started_task(pool, tmp_path, timeout=3)
        assert ready_while_the_gil_is_held(pool, tmp_path, timed)
        with pytest.raises(TimeoutError, match="ran over its timeout"):
            timed.get(0)


@pytest.mark.timeout(120)
def test_a_worker_death_is_handled_while_another_worker_holds_the_gil(tmp_path, no_leaks):
    with Pool(2) as pool:
        victim, pid = started_task(pool, tmp_path)
        kill = functools.partial(os.kill, pid, signal.SIGKILL)
        assert ready_while_the_gil_is_held(pool, tmp_path, victim, kill)
        with pytest.raises(WorkerLostError):
            victim.get(0)


# -- arguments that do not unpickle in the worker ---------------------------------------


def refuse(value):
    raise ValueError(f"{value} does not unpickle here")


class Unreadable:
    """Pickles, but unpickling it raises ``ValueError`` (in the worker)."""

    def __init__(self, value) -> None:
        self.value = value

    def __reduce__(self):
        return refuse, (self.value,)


def outcomes(iterator) -> list:
    """Each value of ``iterator``, or the ``ValueError`` it raised in its place, as text."""
    return [str(o) if isinstance(o, ValueError) else o for o in outcomes_of(iterator, ValueError)]


@pytest.mark.timeout(60)
def test_an_argument_that_does_not_unpickle_fails_its_own_task_only(no_leaks):
    with Pool(1) as pool:
        (pid,) = pool.stats().workers
        got = outcomes(pool.imap(tasks.square, [0, Unreadable(1), 2, 3], 1))
        assert got == [0, "1 does not unpickle here", 4, 9]
        with pytest.raises(ValueError, match="7 does not unpickle here") as info:
            pool.apply(tasks.square, (Unreadable(7),))
        assert "did not unpickle" in str(info.value.__cause__)
        assert pool.stats().workers == (pid,)
        assert pool.stats().workers_replaced == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("maxtasks", [None, 3])
def test_unreadable_chunks_among_many_small_ones_fail_alone(maxtasks, no_leaks):
    items = list(range(200))
    items[70] = Unreadable(70)
    items[150] = Unreadable(150)
    with Pool(2, maxtasksperchild=maxtasks) as pool:
        got = outcomes(pool.imap(tasks.square, items, 1))
        failed = [i for i, value in enumerate(got) if isinstance(value, str)]
        assert failed == [70, 150]
        assert all(got[i] == i * i for i in range(200) if i not in failed)
        got = outcomes(pool.imap(tasks.square, items, 7))  # a chunk fails as a whole
        failed = [i for i, value in enumerate(got) if isinstance(value, str)]
        assert failed == [*range(70, 77), *range(147, 154)]
        assert pool.stats().workers_replaced == 0
