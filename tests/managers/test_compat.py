"""The same scenarios on ``multiprocessing.managers`` and plait: the same observable results."""

from __future__ import annotations

import copy
import threading
import time
import types

import pytest

import plait.multiprocessing.managers

from . import targets

pytestmark = pytest.mark.timeout(60)


# Names the standard module has only because it imports them (modules, helpers), and on
# 3.10 the leftovers of the loop that registers its dict-view reducers.
_INCIDENTAL = {"format_exc", "get_context", "getpid", "view_type", "view_types"}


def test_face_exports_every_standard_name_and_only_those():
    import multiprocessing.managers as standard

    face = plait.multiprocessing.managers
    public = {
        name
        for name in dir(standard)
        if not name.startswith("_") and not isinstance(getattr(standard, name), types.ModuleType)
    }
    data = {"HAS_SHMEM", "listener_client"}  # on the face, outside its __all__
    assert set(face.__all__) | data == public - _INCIDENTAL
    assert all(hasattr(face, name) for name in data)
    for name in face.__all__:
        value = getattr(face, name)
        module = getattr(value, "__module__", None) or ""
        # plait's own code; the standard exception classes are reused (DESIGN.md)
        assert not module.startswith("multiprocessing") or name == "ProcessError", name


def test_dict_mutated_by_8_children(family, plait_no_leaks):
    with family.manager() as m:
        d = m.dict()
        lock = m.Lock()
        ps = [
            family.mp.Process(target=targets.add_to_shared, args=(d, lock, "n", 10))
            for _ in range(8)
        ]
        ps += [family.mp.Process(target=targets.set_item, args=(d, i, i * i)) for i in range(8)]
        for p in ps:
            p.start()
        for p in ps:
            p.join(30)
        assert [p.exitcode for p in ps] == [0] * 16
        assert d.copy() == {"n": 80, **{i: i * i for i in range(8)}}
        del d, lock


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_proxies_pickled_to_children_under_every_start_method(family, method, plait_no_leaks):
    ctx = family.mp.get_context(method)
    with family.managers.SyncManager(ctx=ctx) as m:
        items = m.list()
        ps = [ctx.Process(target=targets.append_pid, args=(items,)) for _ in range(3)]
        for p in ps:
            p.start()
        for p in ps:
            p.join(30)
        assert sorted(items) == sorted(p.pid for p in ps)
        del items


def test_standard_types_behave_alike(family):
    with family.manager() as m:
        d = m.dict(a=1)
        d.update(b=2)
        assert sorted(d.keys()) == ["a", "b"]
        assert sorted(d.items()) == [("a", 1), ("b", 2)]
        assert sorted(iter(d)) == ["a", "b"]
        assert d.get("zz", 7) == 7
        with pytest.raises(KeyError):
            d["zz"]
        items = m.list([3, 1, 2])
        items.sort()
        items += [4]
        assert items[:] == [1, 2, 3, 4] and len(items) == 4 and 4 in items
        assert str(items) == "[1, 2, 3, 4]"
        d["nested"] = items
        d["nested"].append(5)
        assert items[-1] == 5 and d["nested"][:] == [1, 2, 3, 4, 5]
        ns = m.Namespace(x=1)
        ns.y = 2
        assert (ns.x, ns.y) == (1, 2)
        with pytest.raises(AttributeError):
            _ = ns.missing
        v = m.Value("i", 3)
        v.value += 1
        assert v.value == 4 and v.get() == 4
        a = m.Array("i", [1, 2, 3])
        a[0] = 9
        assert (len(a), a[0], list(a[:])) == (3, 9, [9, 2, 3])
        assert copy.deepcopy(items) == [1, 2, 3, 4, 5]


def test_synchronization_types(family):
    with family.manager() as m:
        lock, rlock = m.Lock(), m.RLock()
        assert lock.acquire(timeout=1) and not lock.acquire(timeout=0.01)
        lock.release()
        with rlock:
            with rlock:
                pass
        sem = m.BoundedSemaphore(1)
        assert sem.acquire(timeout=1)
        sem.release()
        with pytest.raises(ValueError):
            sem.release()
        ev = m.Event()
        assert not ev.wait(0.01)
        ev.set()
        assert ev.is_set() and ev.wait(1)
        cond = m.Condition()
        with cond:
            assert not cond.wait(0.01)
            assert cond.wait_for(lambda: True, 0.01)
        barrier = m.Barrier(1)
        assert barrier.wait(1) == 0 and barrier.parties == 1
        q = m.Queue()
        q.put(1)
        assert q.get(timeout=1) == 1
        with pytest.raises(Exception) as info:
            q.get(timeout=0.01)
        assert type(info.value).__name__ == "Empty"
        jq = m.JoinableQueue()
        jq.put(1)
        jq.get()
        jq.task_done()
        jq.join()


def test_remote_exceptions_and_unexposed_methods(family):
    class CounterManager(family.managers.BaseManager):
        pass

    CounterManager.register("Counter", targets.Counter)
    with CounterManager(ctx=family.mp.get_context("fork")) as m:
        c = m.Counter(1)
        assert c.add(2) == 3
        with pytest.raises(KeyError, match="no such counter"):
            c.fail()
        # A RemoteError on both (plait's is an AttributeError too).
        with pytest.raises(family.managers.RemoteError, match="_hidden"):
            c._callmethod("_hidden")
        assert not hasattr(c, "_hidden")


def test_proxy_used_from_several_threads(family):
    with family.manager() as m:
        d = m.dict()

        def work(k):
            for j in range(50):
                d[(k, j)] = j

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(d) == 200


def test_pool(family):
    with family.manager() as m:
        with m.Pool(2) as pool:
            assert pool.map(abs, [-1, -2, -3]) == [1, 2, 3]
            assert pool.apply_async(abs, (-4,)).get(10) == 4
            assert list(pool.imap(abs, [-5, -6])) == [5, 6]


def test_blocking_queue_and_event_calls_across_processes(family, plait_no_leaks):
    ctx = family.mp.get_context("fork")
    with family.managers.SyncManager(ctx=ctx) as m:
        q, results = m.Queue(), m.Queue()
        ev_in, ev_out = m.Event(), m.Event()
        consumer = ctx.Process(target=targets.consume, args=(q, results, 3))
        waiter = ctx.Process(target=targets.wait_then_set, args=(ev_in, ev_out))
        consumer.start()
        waiter.start()
        for i in range(3):
            q.put(i)
        ev_in.set()
        assert ev_out.wait(30)
        assert results.get(timeout=30) == [0, 1, 2]
        assert results.get(timeout=30) == 0
        consumer.join(30)
        waiter.join(30)
        assert (consumer.exitcode, waiter.exitcode) == (0, 0)
        bounded = m.Queue(1)
        bounded.put(1)
        try:  # not pytest.raises: its traceback would keep this frame (and fds) alive
            bounded.put(2, timeout=0.01)
        except Exception as exc:
            error = type(exc).__name__
        assert error == "Full"
        del q, results, ev_in, ev_out, bounded


def test_a_typeid_registered_again_replaces_the_first(family):
    class Again(family.managers.BaseManager):
        pass

    Again.register("thing", list)
    Again.register("thing", dict)  # a notebook cell run twice, a module imported twice
    with Again(ctx=family.mp.get_context("fork")) as m:
        assert m.thing(a=1).copy() == {"a": 1}


def _shut_down_in_the_child(m, done):
    m.shutdown()  # a library's cleanup in a worker that inherited the manager
    done.set()


def test_shutdown_in_a_forked_child_leaves_the_parent_s_server_running(family):
    ctx = family.mp.get_context("fork")
    with family.manager() as m:
        d = m.dict(a=1)
        done = ctx.Event()
        p = ctx.Process(target=_shut_down_in_the_child, args=(m, done))
        p.start()
        p.join(30)
        assert (p.exitcode, done.is_set()) == (0, True)
        assert d["a"] == 1
        del d


def _get_until_gone(q, connected, out):
    q.qsize()  # this thread's connection is made
    connected.set()
    try:
        q.get()
    except (EOFError, BrokenPipeError):  # what programs written for the standard one catch
        out.append("gone")


def test_a_call_blocked_when_the_server_dies_raises_what_standard_handlers_catch(family):
    m = family.manager()
    try:
        q = m.Queue()
        out, connected = [], threading.Event()
        t = threading.Thread(target=_get_until_gone, args=(q, connected, out))
        t.start()
        assert connected.wait(30)
        time.sleep(0.5)  # for the get to reach the server: it is killed while it waits
        m._process.kill()
        t.join(30)
        assert out == ["gone"]
    finally:
        m.shutdown()
