"""Threads and timers: the standard behaviour, plus result() that keeps the outcome."""

import threading
import traceback

import pytest

import plait.threading


@pytest.fixture(params=[threading, plait.threading], ids=["threading", "plait"])
def tmod(request):
    return request.param


@pytest.mark.timeout(10)
def test_thread_runs_target_with_args_and_name(tmod, no_leaks):
    seen = []
    t = tmod.Thread(target=lambda a, b=0: seen.append((a, b)), args=(1,), kwargs={"b": 2})
    t.name = "worker-1"
    t.start()
    t.join(5)
    assert not t.is_alive()
    assert seen == [(1, 2)]
    assert t.ident is not None and t.native_id is not None
    assert t not in tmod.enumerate()


@pytest.mark.timeout(10)
def test_current_thread_inside_is_the_thread_object(tmod, no_leaks):
    inside = []
    t = tmod.Thread(target=lambda: inside.append(tmod.current_thread()), daemon=True)
    assert t.daemon
    t.start()
    t.join(5)
    assert inside == [t]


@pytest.mark.timeout(10)
def test_timer_cancel_stops_it(tmod, no_leaks):
    fired = []
    timer = tmod.Timer(30, fired.append, args=("late",))
    timer.start()
    timer.cancel()
    timer.join(5)
    assert not timer.is_alive()
    assert fired == []


@pytest.mark.timeout(10)
def test_timer_fires_with_its_arguments(tmod, no_leaks):
    fired = []
    timer = tmod.Timer(0.01, lambda *a, **k: fired.append((a, k)), args=(1,), kwargs={"x": 2})
    timer.start()
    timer.join(5)
    assert fired == [((1,), {"x": 2})]


@pytest.mark.timeout(10)
def test_exception_still_reaches_excepthook(tmod, no_leaks, monkeypatch):
    reported = []
    monkeypatch.setattr(threading, "excepthook", lambda args: reported.append(args.exc_type))
    t = tmod.Thread(target=lambda: 1 / 0)
    t.start()
    t.join(5)
    assert reported == [ZeroDivisionError]


@pytest.mark.timeout(10)
def test_result_returns_the_value(no_leaks):
    t = plait.threading.Thread(target=sum, args=([1, 2, 3],))
    t.start()
    assert t.result(timeout=5) == 6


def _fail_deep():
    raise KeyError("lost in a thread")


@pytest.mark.timeout(10)
def test_result_reraises_with_the_threads_traceback(no_leaks, monkeypatch):
    monkeypatch.setattr(threading, "excepthook", lambda args: None)
    t = plait.threading.Thread(target=_fail_deep)
    t.start()
    with pytest.raises(KeyError, match="lost in a thread") as info:
        t.result(timeout=5)
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "_fail_deep" in frames


@pytest.mark.timeout(10)
def test_result_of_a_subclass_that_overrides_run(no_leaks):
    class Worker(plait.threading.Thread):
        def run(self):
            return "from run"

    class Deeper(Worker):
        def run(self):
            return super().run() + " and deeper"

    workers = [Worker(), Deeper()]
    for w in workers:
        w.start()
    assert [w.result(5) for w in workers] == ["from run", "from run and deeper"]


@pytest.mark.timeout(10)
def test_result_times_out_while_running(no_leaks):
    release = plait.threading.Event()
    t = plait.threading.Thread(target=release.wait, args=(10,))
    t.start()
    with pytest.raises(TimeoutError, match="still running"):
        t.result(timeout=0.01)
    release.set()
    assert t.result(timeout=5) is True


def test_result_of_a_thread_never_started():
    with pytest.raises(RuntimeError, match="never started"):
        plait.threading.Thread(target=print).result()


@pytest.mark.timeout(10)
def test_timer_result_is_the_functions_value(no_leaks):
    timer = plait.threading.Timer(0, lambda: 42)
    timer.start()
    assert timer.result(5) == 42
