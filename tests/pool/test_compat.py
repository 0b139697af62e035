"""The same scenarios on ``multiprocessing.pool`` and on plait: the same observable results."""

from __future__ import annotations

import functools
import gc
import multiprocessing
import multiprocessing.pool
import pickle
import threading
import types
import warnings
import weakref

import pytest

import plait.multiprocessing.pool
from plait.pool import TimeoutError as PlaitTimeoutError
from tests.pool import tasks
from tests.support import wait_until

FACES = [
    pytest.param(multiprocessing.pool, id="multiprocessing"),
    pytest.param(plait.multiprocessing.pool, id="plait"),
]


def check_leaks(request, face) -> None:
    """The leak check, for plait only: the standard pool frees its fds when collected."""
    if face is plait.multiprocessing.pool:
        request.getfixturevalue("no_leaks")


@pytest.fixture(params=FACES)
def pool(request):
    check_leaks(request, request.param)
    with request.param.Pool(2) as p:
        yield p
        p.close()
        p.join()


def test_face_exports_standard_names_and_classes():
    face, standard = plait.multiprocessing.pool, multiprocessing.pool
    assert not set(face.__all__) - set(dir(standard))
    for name in face.__all__:
        obj = getattr(face, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, getattr(standard, name)), name


@pytest.mark.timeout(60)
def test_calls_give_the_same_results(pool):
    assert pool.apply(tasks.add, (2, 3)) == 5
    assert pool.apply(tasks.add, (), {"a": 1, "b": 2}) == 3
    assert pool.map(tasks.square, range(100)) == [x * x for x in range(100)]
    assert pool.map(tasks.square, range(100), chunksize=7) == [x * x for x in range(100)]
    assert pool.map(tasks.square, []) == []
    assert list(pool.imap(tasks.square, range(50))) == [x * x for x in range(50)]
    assert list(pool.imap(tasks.square, range(50), 3)) == [x * x for x in range(50)]
    assert sorted(pool.imap_unordered(tasks.square, range(50))) == [x * x for x in range(50)]
    assert pool.starmap(tasks.add, [(1, 2), (3, 4)]) == [3, 7]
    assert pool.starmap_async(tasks.add, [(1, 2)]).get(30) == [3]
    assert pool.map_async(tasks.square, range(5)).get(30) == [0, 1, 4, 9, 16]


@pytest.mark.timeout(60)
def test_async_result_and_callbacks(pool):
    got, errors = [], []
    r = pool.apply_async(tasks.square, (7,), callback=got.append)
    assert r.get(30) == 49
    assert r.ready() and r.successful()
    r = pool.apply_async(tasks.fail, (1,), error_callback=errors.append)
    r.wait(30)
    assert r.ready() and not r.successful()
    with pytest.raises(ValueError, match="bad item 1"):
        r.get(30)
    m = pool.map_async(tasks.square, range(4), callback=got.append)
    m.wait(30)
    assert got == [49, [0, 1, 4, 9]]
    assert isinstance(errors[0], ValueError)


def public_names(obj) -> set[str]:
    return {name for name in dir(obj) if not name.startswith("_")}


@pytest.mark.timeout(60)
def test_results_have_the_standard_interface_and_no_more(pool):
    """What a caller holds: the standard public names, plus only plait's documented
    ``cancel``/``cancelled`` on ``AsyncResult``; the engine's machinery stays out."""
    extras = {"cancel", "cancelled"} if isinstance(pool, plait.multiprocessing.pool.Pool) else set()
    applied = pool.apply_async(tasks.add, (1, 2))
    mapped = pool.map_async(tasks.square, range(3))
    ordered = pool.imap(tasks.square, range(3))
    unordered = pool.imap_unordered(tasks.square, range(3))
    assert public_names(applied) == {"get", "ready", "successful", "wait"} | extras
    assert public_names(mapped) == {"get", "ready", "successful", "wait"} | extras
    assert public_names(ordered) == public_names(unordered) == {"next"}
    assert (applied.get(30), mapped.get(30)) == (3, [0, 1, 4])
    assert (list(ordered), sorted(unordered)) == ([0, 1, 4], [0, 1, 4])


@pytest.mark.timeout(60)
def test_exceptions_carry_the_remote_traceback(pool):
    with pytest.raises(ValueError) as info:
        pool.map(tasks.fail, range(3))
    cause = info.value.__cause__
    assert isinstance(cause, multiprocessing.pool.RemoteTraceback)
    assert "in fail" in str(cause)
    # the pool keeps serving
    assert pool.apply(tasks.square, (3,)) == 9


@pytest.mark.timeout(60)
def test_imap_raises_at_the_failed_item_and_goes_on(pool):
    it = pool.imap(tasks.fail_on_odd, range(4), chunksize=1)
    assert next(it) == 0
    with pytest.raises(ValueError, match="bad item 1"):
        next(it)
    assert next(it) == 2
    with pytest.raises(ValueError, match="bad item 3"):
        next(it)
    with pytest.raises(StopIteration):
        next(it)


@pytest.mark.timeout(60)
def test_get_timeout_raises_multiprocessing_timeout_error(pool, tmp_path):
    release = tmp_path / "release"
    r = pool.apply_async(tasks.return_once_path_exists, (str(release), "late"))
    with pytest.raises(multiprocessing.TimeoutError):
        r.get(0.05)
    assert not r.ready()
    with pytest.raises(ValueError):
        r.successful()
    release.touch()
    assert r.get(30) == "late"


@pytest.mark.timeout(60)
def test_a_negative_timeout_does_not_wait(pool, tmp_path):
    # A timeout computed as "deadline - now" may be past: no error, the call just does
    # not wait (it returns what is ready, or raises TimeoutError).
    ready = pool.apply_async(tasks.square, (3,))
    ready.wait(30)
    assert ready.get(-0.5) == 9
    assert ready.wait(-1) is None
    release = tmp_path / "release"
    late = pool.apply_async(tasks.return_once_path_exists, (str(release), "late"))
    assert late.wait(-1) is None
    with pytest.raises(multiprocessing.TimeoutError):
        late.get(-1)
    it = pool.imap(tasks.return_once_path_exists, [str(release)])
    with pytest.raises(multiprocessing.TimeoutError):
        it.next(-1)
    release.touch()
    assert (late.get(30), it.next(30)) == ("late", None)


@pytest.mark.timeout(60)
def test_unpicklable_result_and_exception_arrive_as_errors(pool):
    with pytest.raises(multiprocessing.pool.MaybeEncodingError):
        pool.apply(tasks.unpicklable_result)
    r = pool.apply_async(tasks.raise_unpicklable)
    with pytest.raises(Exception) as info:
        r.get(30)
    assert "lock" in str(info.value)
    assert pool.apply(tasks.square, (4,)) == 16


@pytest.mark.parametrize("face", FACES)
@pytest.mark.timeout(60)
def test_misuse_raises_what_multiprocessing_raises(face, request):
    check_leaks(request, face)
    with pytest.raises(ValueError, match="Number of processes must be at least 1"):
        face.Pool(0)
    with pytest.raises(TypeError):
        face.Pool(1, initializer=5)
    p = face.Pool(1)
    p.close()
    with pytest.raises(ValueError, match="Pool not running"):
        p.apply_async(tasks.square, (1,))
    with pytest.raises(ValueError, match="Pool not running"):
        p.map(tasks.square, [1])
    p.join()
    p = face.Pool(1)
    with pytest.raises(ValueError, match="Pool is still running"):
        p.join()
    p.terminate()
    with pytest.raises(ValueError, match="Pool not running"):
        p.imap(tasks.square, [1])
    p.join()


@pytest.mark.parametrize("face", FACES)
@pytest.mark.timeout(60)
def test_initializer_and_maxtasksperchild(face, request):
    check_leaks(request, face)
    with face.Pool(2, initializer=tasks.set_global, initargs=("ready",)) as p:
        assert p.map(tasks.read_global, range(4)) == ["ready"] * 4
    with face.Pool(1, maxtasksperchild=2) as p:
        pids = [p.apply(tasks.pid) for _ in range(6)]
        assert len(set(pids)) == 3
        p.close()
        p.join()


@pytest.mark.parametrize("face", FACES)
@pytest.mark.timeout(60)
def test_maxtasksperchild_counts_a_chunk_as_one_task(face, request):
    check_leaks(request, face)
    with face.Pool(2, maxtasksperchild=1) as p:
        pids = p.map(tasks.pid, range(300), chunksize=100)
        p.close()
        p.join()
    # Each chunk of 100 ran whole in one worker, which then retired.
    assert [len(set(pids[i : i + 100])) for i in (0, 100, 200)] == [1, 1, 1]
    assert len(set(pids)) == 3


def consume(iterator) -> list:
    """What a caller sees of ``iterator``: its values, then ``"raised"`` if it raised."""
    seen = []
    try:
        for value in iterator:
            seen.append(value)
    except tasks.SayWhenError:
        seen.append("raised")
    return seen


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("kind", ["Pool", "ThreadPool"])
@pytest.mark.timeout(60)
def test_imap_over_an_input_that_raises(face, kind, request):
    # The error reaches the caller in place of the chunk the input raised in: the
    # items of that chunk read before the error never run.
    check_leaks(request, face)
    with getattr(face, kind)(2) as p:
        assert consume(p.imap(tasks.square, tasks.raise_at(1, 0), 1)) == ["raised"]
        assert consume(p.imap(tasks.square, tasks.raise_at(10, 3), 1)) == [0, 1, 4, "raised"]
        assert consume(p.imap(tasks.square, tasks.raise_at(20, 7), 2)) == [
            *[0, 1, 4, 9, 16, 25],
            "raised",
        ]
        assert consume(p.imap(tasks.square, tasks.raise_at(20, 7), 4)) == [0, 1, 4, 9, "raised"]
        seen = consume(p.imap_unordered(tasks.square, tasks.raise_at(20, 7), 2))
        assert seen[-1] == "raised"  # in any place among the results: unordered
        assert set(seen[:-1]) <= {0, 1, 4, 9, 16, 25}
        with pytest.raises(tasks.SayWhenError):
            p.map(tasks.square, tasks.raise_at(10, 3))
        assert p.map(tasks.square, range(3)) == [0, 1, 4]  # the pool goes on


@pytest.mark.parametrize("face", FACES)
@pytest.mark.timeout(60)
def test_maxtasksperchild_pool_closed_before_its_work_is_done(face, request):
    # Each worker takes one task, exits and is replaced, after close() too: join()
    # returns once all six ran.
    check_leaks(request, face)
    p = face.Pool(3, maxtasksperchild=1)
    results = [p.apply_async(tasks.sleep_return, (0.1, i)) for i in range(6)]
    p.close()
    p.join()
    assert [r.get(30) for r in results] == list(range(6))


@pytest.mark.parametrize("face", FACES)
@pytest.mark.timeout(60)
def test_thread_pool(face, request):
    check_leaks(request, face)
    unpicklable = []  # a ThreadPool passes objects as they are
    with face.ThreadPool(3) as p:
        assert p.map(tasks.square, range(20)) == [x * x for x in range(20)]
        assert p.apply(unpicklable.append, (1,)) is None
        assert list(p.imap(tasks.square, range(5), 2)) == [0, 1, 4, 9, 16]
        assert sorted(p.imap_unordered(tasks.square, range(5))) == [0, 1, 4, 9, 16]
        assert p.starmap(tasks.add, [(1, 2)]) == [3]
        with pytest.raises(ValueError, match="bad item"):
            p.apply(tasks.fail, (0,))
        p.close()
        p.join()
    assert unpicklable == [1]


@pytest.mark.parametrize("face", FACES)
@pytest.mark.timeout(60)
def test_thread_pool_terminate_does_not_wait_for_the_running_task(face, request):
    check_leaks(request, face)
    started, release = threading.Event(), threading.Event()
    finished, ran = [], []

    def block():
        started.set()
        release.wait(30)  # the old terminate() waited this long
        finished.append("blocked task")

    p = face.ThreadPool(1)
    p.apply_async(block)
    assert started.wait(30)
    queued = [p.apply_async(ran.append, (i,)) for i in range(3)]
    p.terminate()
    assert finished == []  # terminate() returned while the task still ran
    release.set()
    p.join()  # waits for the released thread, which exits without taking another task
    assert (finished, ran) == (["blocked task"], [])
    assert not any(r.ready() and r.successful() for r in queued)


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("kind", ["Pool", "ThreadPool"])
@pytest.mark.timeout(60)
def test_a_task_s_arguments_and_results_are_freed_once_the_caller_has_them(face, kind, request):
    check_leaks(request, face)
    with getattr(face, kind)(2) as p:
        objs = [tasks.Counted() for _ in range(10)]
        refs = [weakref.ref(o) for o in objs]
        p.map(tasks.identity, objs)
        del objs
        gc.collect()
        # The workers drop them after delivering their results, maybe just after.
        assert wait_until(lambda: all(r() is None for r in refs), 10)
        assert tasks.Counted.alive == 0


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("kind", ["Pool", "ThreadPool"])
@pytest.mark.timeout(60)
def test_the_standard_pool_s_internals_that_programs_read(face, kind, request):
    check_leaks(request, face)
    p = getattr(face, kind)(3)
    assert p._state == face.RUN
    workers = p._pool
    assert len(workers) == 3 and all(w.is_alive() for w in workers)
    if kind == "Pool":
        assert len({w.pid for w in workers}) == 3
    p._repopulate_pool()  # nothing to replace: the same workers
    assert len(p._pool) == 3
    p.close()
    assert p._state == face.CLOSE
    p.join()
    p.terminate()
    assert p._state == face.TERMINATE


@pytest.mark.parametrize("face", FACES)
@pytest.mark.timeout(60)
def test_maxtasksperchild_workers_are_replaced(face, request):
    check_leaks(request, face)
    p = face.Pool(2, maxtasksperchild=5)
    try:
        first = {w.pid for w in p._pool}
        assert p.map(tasks.square, range(40), chunksize=1) == [x * x for x in range(40)]
        # the pool's own maintenance replaces the workers; calling _repopulate_pool from
        # here too would race it (the standard one can then end with three workers)
        assert wait_until(lambda: len(p._pool) == 2 and all(w.is_alive() for w in p._pool), 10)
        assert not first & {w.pid for w in p._pool}
        p.close()
    finally:
        p.terminate()
        p.join()


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("kind", ["Pool", "ThreadPool"])
@pytest.mark.timeout(60)
def test_a_running_pool_dropped_warns_like_the_standard_one(face, kind, request):
    check_leaks(request, face)
    p = getattr(face, kind)(1)
    p.terminate()
    p.join()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del p
        gc.collect()
    assert not caught  # a pool that was terminated says nothing
    p = getattr(face, kind)(1)
    p.terminate()
    p.join()
    p._state = face.RUN  # as CPython's test_resource_warning does
    with pytest.warns(ResourceWarning, match="unclosed running multiprocessing pool"):
        del p
        gc.collect()


def nestable_pools(face) -> list:
    """The two known recipes for pools whose workers may start pools: non-daemonic
    workers made by a context, or by the pool's ``Process`` hook."""
    mp = multiprocessing if face is multiprocessing.pool else plait.multiprocessing

    class NoDaemonProcess(mp.get_context("fork").Process):
        @property
        def daemon(self):
            return False

        @daemon.setter
        def daemon(self, value):
            pass

    class NoDaemonContext(type(mp.get_context("fork"))):
        Process = NoDaemonProcess

    class NestablePool(face.Pool):
        @staticmethod
        def Process(ctx, *args, **kwds):
            return NoDaemonProcess(*args, **kwds)

    return [face.Pool(2, context=NoDaemonContext()), NestablePool(2)]


@pytest.mark.parametrize("face", FACES)
@pytest.mark.timeout(60)
def test_the_pool_s_context_or_process_hook_makes_its_workers(face, request):
    check_leaks(request, face)
    name = "multiprocessing" if face is multiprocessing.pool else "plait.multiprocessing"
    for pool in nestable_pools(face):
        with pool as p:
            assert p.map(functools.partial(tasks.nested_pool_sum, name), [3, 4]) == [5, 14]
            p.close()
            p.join()
    with face.Pool(1) as p:
        if face is multiprocessing.pool:  # its workers are daemonic: no pool inside them
            with pytest.raises(AssertionError, match="daemonic processes"):
                p.apply(tasks.nested_pool_sum, (name, 3))
        else:  # plait's may start pools (issue 16; tests/pool/test_nested.py)
            assert p.apply(tasks.nested_pool_sum, (name, 3)) == 5


def test_face_has_every_public_name_of_the_standard_module():
    face, standard = plait.multiprocessing.pool, multiprocessing.pool
    names = {
        n
        for n in dir(standard)
        if not n.startswith("_") and not isinstance(getattr(standard, n), types.ModuleType)
    }
    assert names <= set(face.__all__)
    for name in ("INIT", "RUN", "CLOSE", "TERMINATE"):
        assert getattr(face, name) == getattr(standard, name)
    assert face.TimeoutError is multiprocessing.TimeoutError
    for m in (face, standard):
        assert m.mapstar((tasks.square, [1, 2])) == [1, 4]
        assert m.starmapstar((tasks.add, [(1, 2), (3, 4)])) == [3, 7]
        assert isinstance(next(m.job_counter), int)
        try:
            raise ValueError("sent with its traceback")
        except ValueError as exc:
            wrapped = m.ExceptionWithTraceback(exc, exc.__traceback__)
        rebuilt = pickle.loads(pickle.dumps(wrapped))
        assert type(rebuilt) is ValueError
        assert isinstance(rebuilt.__cause__, standard.RemoteTraceback)
        assert "sent with its traceback" in str(rebuilt.__cause__)
        assert str(m.rebuild_exc(KeyError("k"), "tb").__cause__) == "tb"
    with pytest.raises(NotImplementedError, match="plait.multiprocessing.Pool"):
        face.worker(None, None)


def test_plait_timeout_error_is_every_standard_timeout():
    assert issubclass(PlaitTimeoutError, multiprocessing.TimeoutError)
    assert issubclass(PlaitTimeoutError, TimeoutError)
