"""The faces beyond the basics: the same scenario on threading/queue and on plait's faces.

Hooks assigned through the face, the legacy camelCase spellings and their warnings, the
standard reprs, ``_at_fork_reinit``, the reentrant locks under their private names, the
thread registry's names, and ``queue._PySimpleQueue``. Each test runs on the standard
module and on plait's face and expects what a program would see to be the same.
"""

import _thread
import gc
import pickle
import queue
import re
import sys
import threading
import types
import warnings
import weakref

import pytest

import plait.queue
import plait.threading
from plait.threads import interpreter
from tests.support import run_python, wait_until


@pytest.fixture(params=[threading, plait.threading], ids=["threading", "plait"])
def tmod(request):
    return request.param


@pytest.fixture(params=[queue, plait.queue], ids=["queue", "plait"])
def qmod(request):
    return request.param


def run_thread(tmod, target=None, cls=None):
    thread = (cls or tmod.Thread)(target=target)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    return thread


class Boom(Exception):
    pass


def boom():
    raise Boom("in a thread")


# --- hooks through the face ------------------------------------------------------------


@pytest.mark.timeout(20)
def test_excepthook_assigned_on_the_face_reports_the_face_threads(tmod, monkeypatch):
    reported = []
    monkeypatch.setattr(tmod, "excepthook", lambda args: reported.append(args))
    thread = run_thread(tmod, boom)
    [args] = reported
    assert (args.exc_type, str(args.exc_value), args.thread) == (Boom, "in a thread", thread)
    assert args.exc_traceback is args.exc_value.__traceback__


@pytest.mark.timeout(20)
def test_original_excepthook_prints_the_standard_report(tmod, monkeypatch, capsys):
    monkeypatch.setattr(tmod, "excepthook", tmod.__excepthook__)
    thread = run_thread(tmod, boom)
    err = capsys.readouterr().err
    assert f"Exception in thread {thread.name}:" in err
    assert "Boom: in a thread" in err


@pytest.mark.timeout(20)
def test_failing_excepthook_falls_back_to_sys_excepthook(tmod, monkeypatch, capsys):
    def broken_hook(args):
        raise ValueError("the hook failed")

    seen = []
    monkeypatch.setattr(tmod, "excepthook", broken_hook)
    monkeypatch.setattr(sys, "excepthook", lambda t, v, tb: seen.append(str(v)))
    run_thread(tmod, boom)
    assert capsys.readouterr().err == "Exception in threading.excepthook:\n"
    assert seen == ["the hook failed"]


def test_face_excepthook_is_the_interpreters_live_hook(monkeypatch):
    def hook(args):
        pass

    monkeypatch.setattr(threading, "excepthook", hook)
    assert plait.threading.excepthook is hook
    monkeypatch.setattr(plait.threading, "excepthook", print)
    assert threading.excepthook is print
    namespace = {}
    exec("from plait.threading import *", namespace)
    assert namespace["excepthook"] is print


def test_deleting_the_face_hook_restores_the_default(monkeypatch):
    monkeypatch.setattr(threading, "excepthook", print)
    del plait.threading.excepthook
    assert threading.excepthook is threading.__excepthook__
    assert plait.threading.excepthook is plait.threading.__excepthook__


@pytest.mark.timeout(20)
def test_settrace_and_setprofile_through_the_face_reach_new_threads(tmod):
    traced, profiled = set(), set()

    def tracer(frame, event, arg):
        traced.add(frame.f_code.co_name)

    def profiler(frame, event, arg):
        profiled.add(frame.f_code.co_name)

    def marked_target():
        pass

    tmod.settrace(tracer)
    tmod.setprofile(profiler)
    try:
        assert (tmod.gettrace(), tmod.getprofile()) == (tracer, profiler)
        run_thread(tmod, marked_target)
    finally:
        tmod.settrace(None)
        tmod.setprofile(None)
    assert "marked_target" in traced
    assert "marked_target" in profiled


# --- legacy spellings ----------------------------------------------------------------


def warned(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = call()
    return value, [(w.category, str(w.message)) for w in caught]


def legacy_calls(tmod):
    """The camelCase spellings, each with the warnings it gave; then what the setters did."""
    thread = tmod.Thread(name="before")
    event = tmod.Event()
    cond = tmod.Condition()
    calls = [thread.isDaemon, lambda: thread.setDaemon(True), thread.getName]
    calls += [lambda: thread.setName("renamed"), event.isSet]
    out = [warned(call) for call in calls]
    with cond:
        out.append(warned(cond.notifyAll))
    out.append(warned(tmod.currentThread)[1])
    out.append(warned(tmod.activeCount)[1])
    out.append((thread.daemon, thread.name))
    return out


def test_legacy_spellings_work_and_warn_as_the_standard():
    calls = legacy_calls(plait.threading)
    assert calls == legacy_calls(threading)
    assert all(category is DeprecationWarning for _, ws in calls[:6] for category, _ in ws)


# --- reprs ---------------------------------------------------------------------------


def shape(text, tmod):
    """A repr with addresses and the module's own path taken out."""
    text = re.sub(r"0x[0-9a-f]+", "0x", text)
    text = re.sub(r"\b\d{6,}\b", "N", text)  # thread idents
    return text.replace(f"{tmod.__name__}.", "").replace("_PyRLock", "_RLock")


#: Tests of RLock._recursion_count(), which the standard locks have from Python 3.11.
needs_recursion_count = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="the standard RLocks have _recursion_count from 3.11"
)


def wait_until_broken(barrier):
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(10)


@pytest.mark.skipif(
    sys.version_info < (3, 11), reason="Event, Semaphore and Barrier have their reprs from 3.11"
)
@pytest.mark.timeout(20)
def test_reprs_have_the_standard_shapes():
    def reprs(tmod):
        out = []
        event = tmod.Event()
        out.append(repr(event))
        event.set()
        out.append(repr(event))
        sem = tmod.Semaphore(3)
        sem.acquire()
        out.append(repr(sem))
        bsem = tmod.BoundedSemaphore(3)
        bsem.acquire()
        out.append(repr(bsem))
        barrier = tmod.Barrier(3)
        waiter = tmod.Thread(target=wait_until_broken, args=(barrier,), daemon=True)
        waiter.start()
        assert wait_until(lambda: barrier.n_waiting == 1)
        out.append(repr(barrier))
        barrier.abort()
        waiter.join(10)
        out.append(repr(barrier))
        lock = tmod.Lock()
        out.append(repr(tmod.Condition(lock)))
        rlock = tmod._PyRLock()
        out.append(repr(rlock))
        with rlock, rlock:
            out.append(repr(rlock))
        out.append(repr(tmod._CRLock()))
        return [shape(r, tmod) for r in out]

    assert reprs(plait.threading) == reprs(threading)
    assert repr(plait.threading.Event()).startswith("<plait.threading.Event at 0x")


def test_public_classes_live_at_the_face(tmod, qmod):
    for name in ("Thread", "Timer", "Condition", "Semaphore", "BoundedSemaphore", "Event"):
        cls = getattr(tmod, name)
        assert cls.__module__ == tmod.__name__
        assert pickle.loads(pickle.dumps(cls)) is cls
    for name in ("Queue", "LifoQueue", "PriorityQueue"):
        cls = getattr(qmod, name)
        assert cls.__module__ == qmod.__name__
        assert pickle.loads(pickle.dumps(cls)) is cls


# --- Event, Condition and fork ---------------------------------------------------------


@pytest.mark.timeout(20)
def test_event_wait_is_true_when_set_then_cleared_before_waking(tmod):
    event = tmod.Event()
    results = []
    waiters = [
        tmod.Thread(target=lambda: results.append(event.wait(10)), daemon=True) for _ in range(4)
    ]
    for w in waiters:
        w.start()
    assert wait_until(lambda: len(event._cond._waiters) == 4)
    event.set()
    event.clear()
    for w in waiters:
        w.join(10)
    assert results == [True] * 4


def test_at_fork_reinit_frees_a_held_primitive(tmod):
    event = tmod.Event()
    event._cond.acquire()
    event._at_fork_reinit()
    assert event._cond.acquire(False)
    assert not event._cond.acquire(False)  # still a plain (non-reentrant) lock
    cond = tmod.Condition(tmod.Lock())
    cond.acquire()
    cond._at_fork_reinit()
    assert cond.acquire(False)


@needs_recursion_count
def test_at_fork_reinit_frees_a_held_python_rlock(tmod):
    rlock = tmod._PyRLock()
    rlock.acquire()
    rlock._at_fork_reinit()
    assert (rlock._recursion_count(), rlock._is_owned()) == (0, False)
    with rlock:
        assert rlock._recursion_count() == 1


# --- the reentrant locks under their private names --------------------------------------


@pytest.fixture(params=["_PyRLock", "_CRLock"])
def rlock_type(request, tmod):
    return getattr(tmod, request.param)


@needs_recursion_count
@pytest.mark.timeout(20)
def test_private_rlocks_keep_the_rlock_contract(rlock_type, tmod):
    lock = rlock_type()
    with pytest.raises(RuntimeError):
        lock.release()
    with pytest.raises(RuntimeError):
        lock._release_save()
    assert lock.acquire() and lock.acquire(False) and lock.acquire(timeout=1)
    assert (lock._recursion_count(), lock._is_owned()) == (3, True)
    seen = []

    def other():
        seen.append((lock._is_owned(), lock._recursion_count(), lock.acquire(timeout=0.01)))
        try:
            lock.release()
        except RuntimeError:
            seen.append("not mine")

    run_thread(tmod, other)
    assert seen == [(False, 0, False), "not mine"]
    for _ in range(3):
        lock.release()
    assert (lock._recursion_count(), lock._is_owned()) == (0, False)
    assert weakref.ref(lock)() is lock


@needs_recursion_count
@pytest.mark.timeout(20)
def test_condition_over_the_python_rlock_releases_every_level(tmod):
    cond = tmod.Condition(tmod._PyRLock())
    ready = []

    def notifier():
        with cond:
            ready.append(True)
            cond.notify()

    with cond, cond:
        thread = tmod.Thread(target=notifier)
        thread.start()
        assert cond.wait_for(lambda: ready, timeout=10)
        assert cond._lock._recursion_count() == 2
    thread.join(10)


def test_crlock_is_what_rlock_makes(tmod):
    assert type(tmod.RLock()) is tmod._CRLock


def test_rlock_ignores_arguments_and_313_warns(tmod):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lock = tmod.RLock(1, a=2)
    assert [w.category for w in caught] == (
        [DeprecationWarning] if sys.version_info >= (3, 13) else []
    )
    assert caught == [] or caught[0].filename == __file__
    with lock, lock:
        assert lock._is_owned()


# --- the thread registry --------------------------------------------------------------


@pytest.mark.timeout(20)
def test_registry_names_are_the_live_registry(tmod):
    release = tmod.Event()
    thread = tmod.Thread(target=release.wait, args=(10,))
    daemon = tmod.Thread(target=release.wait, args=(10,), daemon=True)
    thread.start()
    daemon.start()
    try:
        assert tmod._active[thread.ident] is thread
        if sys.version_info < (3, 13):  # 3.13 keeps the non-daemon threads' handles in _thread
            assert thread._tstate_lock in tmod._shutdown_locks
            assert daemon._tstate_lock not in tmod._shutdown_locks
        assert thread in tmod._dangling
    finally:
        release.set()
        thread.join(10)
        daemon.join(10)
    assert thread.ident not in tmod._active
    assert tmod._HAVE_THREAD_NATIVE_ID is threading._HAVE_THREAD_NATIVE_ID


@pytest.mark.timeout(20)
def test_foreign_thread_appears_as_a_dummy_thread(tmod):
    done = tmod.Lock()
    done.acquire()
    seen = []

    def foreign():
        # Looked up while the thread runs: 3.13 unregisters a dummy thread when it ends.
        seen.append((tmod.current_thread(), tmod._active.get(tmod.get_ident())))
        done.release()

    ident = _thread.start_new_thread(foreign, ())
    assert done.acquire(timeout=10)
    try:
        dummy, registered = seen[0]
        assert isinstance(dummy, tmod._DummyThread)
        assert registered is dummy
    finally:
        tmod._active.pop(ident, None)


def test_patched_counter_names_new_threads(tmod, monkeypatch):
    monkeypatch.setattr(tmod, "_counter", lambda: 7)
    assert tmod.Thread().name == "Thread-7"
    assert tmod.Thread(target=boom).name == "Thread-7 (boom)"


def test_failing_start_new_thread_leaves_no_thread_in_limbo(tmod, monkeypatch):
    def refuse(*args, **kwargs):
        raise tmod.ThreadError("no more threads")

    # The name Thread.start() calls: 3.13 starts threads with joinable handles.
    start = "_start_joinable_thread" if sys.version_info >= (3, 13) else "_start_new_thread"
    monkeypatch.setattr(tmod, start, refuse)
    thread = tmod.Thread(target=boom)
    with pytest.raises(tmod.ThreadError, match="no more threads"):
        thread.start()
    assert thread not in tmod._limbo


def test_every_shared_name_exists_in_the_standard_module():
    for name in interpreter.SHARED:
        assert getattr(plait.threading, name) is getattr(threading, name), name
    assert set(interpreter.SHARED) <= set(dir(plait.threading))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("modname", ["threading", "plait.threading"])
def test_register_atexit_runs_before_exit_once(modname):
    program = f"""if True:
        import {modname} as threading
        def last():
            print('last words')
        def too_late():
            threading._register_atexit(print)
        threading._register_atexit(too_late)
        threading._register_atexit(last)  # the last registered runs first
    """
    done = run_python("-c", program, timeout=50)
    assert done.stdout == "last words\n"
    assert "RuntimeError: can't register atexit after shutdown" in done.stderr


# --- no reference cycle through a thread that raised ------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("should_raise", [False, True], ids=["returned", "raised"])
def test_no_refcycle_through_the_target(tmod, monkeypatch, should_raise):
    monkeypatch.setattr(tmod, "excepthook", lambda args: None)

    class Owner:
        def __init__(self):
            self.thread = tmod.Thread(target=self.work, args=(self,), kwargs={"me": self})
            self.thread.start()

        def work(self, other, me):
            if should_raise:
                raise SystemExit

    gc.disable()
    try:
        owner = Owner()
        owner.thread.join(10)
        ref = weakref.ref(owner)
        del owner
        assert ref() is None
    finally:
        gc.enable()


@pytest.mark.timeout(20)
def test_result_still_has_the_threads_traceback_after_the_report(monkeypatch):
    import traceback

    monkeypatch.setattr(plait.threading, "excepthook", lambda args: None)
    thread = run_thread(plait.threading, boom)
    with pytest.raises(Boom) as info:
        thread.result(5)
    assert [f.name for f in traceback.extract_tb(info.value.__traceback__)][-1] == "boom"


# --- names of the faces ----------------------------------------------------------------


def own_names(module, homes):
    """The names a module defines itself (not its imports), dunders left out."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("__")
        and not isinstance(value, types.ModuleType)
        and getattr(value, "__module__", homes[0]) in homes
    }


def test_queue_face_has_every_name_of_the_standard_module():
    own = own_names(queue, ("queue", "_queue"))
    assert "_PySimpleQueue" in own
    assert own <= set(dir(plait.queue))


def test_threading_face_has_the_standard_names_programs_reach():
    public = {n for n in own_names(threading, ("threading", "_thread")) if not n.startswith("_")}
    assert {"currentThread", "activeCount", "TIMEOUT_MAX"} <= public
    private = {"_PyRLock", "_CRLock", "_HAVE_THREAD_NATIVE_ID", "__excepthook__"}
    assert public | private <= set(dir(plait.threading))


# --- queue._PySimpleQueue --------------------------------------------------------------


@pytest.mark.timeout(30)
def test_py_simple_queue_behaves_as_the_standard_one(qmod):
    q = qmod._PySimpleQueue()
    assert (q.empty(), q.qsize()) == (True, 0)
    for i in range(5):
        q.put(i)
    q.put_nowait(5)
    assert (q.empty(), q.qsize()) == (False, 6)
    assert [q.get() for _ in range(3)] + [q.get_nowait() for _ in range(3)] == list(range(6))
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)
    with pytest.raises(ValueError):
        q.get(timeout=-1)
    assert qmod._PySimpleQueue[int] is not None


@pytest.mark.timeout(60)
def test_py_simple_queue_between_many_threads(qmod):
    q = qmod._PySimpleQueue()
    got = []
    lock = threading.Lock()

    def consume():
        while (item := q.get(timeout=10)) is not None:
            with lock:
                got.append(item)

    consumers = [threading.Thread(target=consume) for _ in range(4)]
    for c in consumers:
        c.start()
    for i in range(2000):
        q.put(i)
    for _ in consumers:
        q.put(None)
    for c in consumers:
        c.join(20)
    assert sorted(got) == list(range(2000))
