"""Behaviours CPython's own suite checks, as scenarios run alike on the standard library and
plait: the xmlrpclib serializer, ``_``-methods in ``exposed``, errors of ``create``, a
restart at the same address, ``SharedMemoryManager``, the bookkeeping calls the suite's
``tearDownClass`` makes, ``dispatch`` on a bare connection, the small helpers."""

from __future__ import annotations

import array
import gc
import importlib
import os
import pickle
import signal
import time
import weakref

import pytest

from . import targets

pytestmark = pytest.mark.timeout(90)

KEY = b"parity key"


def fork_context(family):
    return family.mp.get_context("fork")


def queue_manager_class(family):
    class QueueManager(family.managers.BaseManager):
        pass

    QueueManager.register("get_queue", callable=targets.get_queue)
    return QueueManager


def shared_memory_module(family):
    return importlib.import_module(family.mp.__name__ + ".shared_memory")


def test_xmlrpclib_serializer_carries_what_xml_rpc_carries(family, plait_no_leaks):
    QueueManager = queue_manager_class(family)
    ctx = fork_context(family)
    authkey = os.urandom(16)
    manager = QueueManager(
        address=("127.0.0.1", 0), authkey=authkey, serializer="xmlrpclib", ctx=ctx
    )
    with manager:
        values = (
            "hello",
            None,
            True,
            2.25,
            "\u043f\u0440\u0438",
            b"hall\xe5",
            (1, (2, 3)),
            {"k": 1},
        )
        child = ctx.Process(
            target=targets.put_through_xml_manager,
            args=(family.name, manager.address, authkey, values),
        )
        child.start()
        child.join(60)
        assert child.exitcode == 0
        q = manager.get_queue()
        got = q.get(True, 10)
        # Tuples arrive as lists, bytes as xmlrpc.client.Binary (equal to the bytes).
        assert got == [
            "hello",
            None,
            True,
            2.25,
            "\u043f\u0440\u0438",
            b"hall\xe5",
            [1, [2, 3]],
            {"k": 1},
        ]
        assert type(got[5]).__name__ == "Binary"
        with pytest.raises(TypeError):  # not XML-RPC: refused before anything is sent
            q.put(time.sleep)
        q.put((4, 5))
        assert q.get(True, 10) == [4, 5]
        assert q.qsize() == 0
        del q


def test_xmlrpclib_errors_arrive_as_exceptions_on_plait():
    # The standard library raises the dict XML-RPC makes of an exception (TypeError:
    # exceptions must derive from BaseException); plait rebuilds the exception.
    import queue

    from tests.managers.conftest import PLAIT

    QueueManager = queue_manager_class(PLAIT)
    with QueueManager(authkey=KEY, serializer="xmlrpclib", ctx=fork_context(PLAIT)) as manager:
        q = manager.get_queue()
        with pytest.raises(queue.Empty):
            q.get(True, 0.01)
        with pytest.raises(PLAIT.managers.RemoteError, match="not exposed"):
            q._callmethod("_qsize")
        del q


def test_underscore_methods_listed_in_exposed_are_callable(family):
    class MyManager(family.managers.BaseManager):
        pass

    MyManager.register("Foo", callable=targets.FooBar)
    MyManager.register("Bar", callable=targets.FooBar, exposed=("f", "_h"))
    with MyManager(ctx=fork_context(family)) as manager:
        foo, bar = manager.Foo(), manager.Bar()
        assert [n for n in ("f", "g", "_h") if hasattr(foo, n)] == ["f", "g"]
        assert [n for n in ("f", "g", "_h") if hasattr(bar, n)] == ["f", "_h"]
        assert foo.f() == "f()" and foo._callmethod("f") == "f()"
        with pytest.raises(ValueError, match="g failed"):
            foo.g()
        with pytest.raises(family.managers.RemoteError):
            foo._callmethod("_h")
        assert bar._h() == "_h()" and bar._callmethod("_h") == "_h()"
        del foo, bar


def test_a_failing_create_raises_remote_error(family):
    class MyManager(family.managers.BaseManager):
        pass

    MyManager.register("Refused", callable=targets.refuse)
    with MyManager(ctx=fork_context(family)) as manager:
        with pytest.raises(family.managers.RemoteError, match="refused"):
            manager.Refused(1)
    with family.manager() as manager:
        with pytest.raises(family.managers.RemoteError):
            manager.Pool(-1)


def test_restart_at_the_same_address(family, plait_no_leaks):
    QueueManager = queue_manager_class(family)
    ctx = fork_context(family)
    # The process's own key: a proxy unpickled here (below) authenticates with it.
    key = family.mp.current_process().authkey
    manager = QueueManager(address=("127.0.0.1", 0), authkey=key, ctx=ctx)
    server = manager.get_server()  # made, never run: it must not shadow the next one
    address = server.address
    server.listener.close()
    for _ in range(2):  # the second at once, where the first's sockets linger
        manager = QueueManager(address=address, authkey=key, ctx=ctx)
        manager.start()
        try:
            assert manager.address == address
            q = manager.get_queue()
            q.put("hello")
            again = pickle.loads(pickle.dumps(q))  # rebuilt here: reaches this server
            assert again.get(True, 10) == "hello"
            del q, again
        finally:
            manager.shutdown()
        assert manager._process.exitcode == 0


def test_bookkeeping_of_the_standard_suite(family):
    manager = family.manager()
    d = manager.dict(a=1)
    assert manager._number_of_objects() == 1
    info = manager._debug_info()
    assert "refcount=1" in info and "{'a': 1}" in info
    del d
    manager.shutdown()
    assert manager._process.exitcode == 0
    assert not manager._process.is_alive()
    manager.join()
    assert manager._process is None  # joined: forgotten
    manager.join(1)


def test_dispatch_on_a_bare_connection(family, plait_no_leaks):
    managers = family.managers
    with family.manager() as manager:
        d = manager.dict()
        client = managers.listener_client["pickle"][1]
        with client(manager.address, authkey=manager._authkey) as conn:
            assert managers.dispatch(conn, None, "number_of_objects") == 1
        with client(manager.address, authkey=manager._authkey) as conn:
            with pytest.raises(managers.RemoteError):
                managers.dispatch(conn, None, "no_such_request")
        del d


def test_shared_memory_manager_holds_blocks_until_shutdown(family, plait_no_leaks):
    shared_memory = shared_memory_module(family)
    ctx = fork_context(family)
    smm = family.managers.SharedMemoryManager(ctx=ctx)
    with pytest.raises(ValueError):
        smm.SharedMemory(size=9)  # not started
    smm.start()
    items = smm.ShareableList(range(5))
    block = smm.SharedMemory(size=64)
    name = block.name
    with family.managers.listener_client["pickle"][1](smm.address, authkey=smm._authkey) as c:
        assert sorted(family.managers.dispatch(c, None, "list_segments")) == sorted(
            [name, items.shm.name]
        )
    child = ctx.Process(target=targets.attach_and_write, args=(block, b"HELLO"))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    block.close()  # its creator lets go: the manager still holds it
    again = shared_memory.SharedMemory(name=name)
    assert bytes(again.buf[:5]) == b"HELLO"
    copy = shared_memory.ShareableList(name=items.shm.name)
    assert list(copy) == [0, 1, 2, 3, 4]
    again.close()
    copy.shm.close()
    smm.shutdown()
    with pytest.raises(FileNotFoundError):
        shared_memory.SharedMemory(name=name)
    assert list(items) == [0, 1, 2, 3, 4]  # holders keep using it
    items.shm.close()
    with family.managers.SharedMemoryManager(ctx=ctx) as smm:
        held = smm.ShareableList("howdy").shm.name
    with pytest.raises(FileNotFoundError):
        shared_memory.ShareableList(name=held)


def _maps_of(pid: int, name: str) -> list[str]:
    stem = name.split("@")[0]  # plait's names carry their maker's address after the @
    with open(f"/proc/{pid}/maps") as f:
        return [line for line in f if stem in line]


def test_a_block_its_user_unlinked_is_not_held_by_the_server(family, plait_no_leaks):
    with family.managers.SharedMemoryManager(ctx=fork_context(family)) as smm:
        block = smm.SharedMemory(size=1 << 20)
        name = block.name
        block.close()
        block.unlink()  # done with it: its memory should go now, not at shutdown
        nxt = smm.SharedMemory(size=64)
        assert _maps_of(smm._process.pid, name) == []
        if family.name == "plait":  # its server holds the blocks (the standard one, names)
            assert _maps_of(smm._process.pid, nxt.name) != []
        nxt.close()


def test_shared_memory_server_ignores_sigint(family):
    smm = family.managers.SharedMemoryManager(ctx=fork_context(family))
    smm.start()
    try:
        first = smm.ShareableList(range(3))
        os.kill(smm._process.pid, signal.SIGINT)
        second = smm.ShareableList(range(3))
        assert list(first) == list(second)
        first.shm.close()
        second.shm.close()
    finally:
        smm.shutdown()
    assert smm._process.exitcode == 0


def test_pool_proxy_keeps_no_task_arguments(family):
    with family.manager() as manager:
        with manager.Pool(2) as pool:
            objs = [targets.FooBar() for _ in range(10)]
            refs = [weakref.ref(o) for o in objs]
            assert len(pool.map(id, objs)) == 10
            del objs
            gc.collect()
            assert [r() for r in refs] == [None] * 10


def test_small_helpers(family):
    managers = family.managers
    targets.make_local_set(family.name)
    copy = pickle.loads(pickle.dumps(targets.LOCAL_SET))
    assert type(copy) is type(targets.LOCAL_SET) and len(copy) == 0
    ctx = fork_context(family)
    here, there = ctx.Pipe()
    child = ctx.Process(target=targets.send_local_set_length, args=(there,))
    child.start()
    assert here.recv() == 0  # empty in a forked child
    child.join(30)
    assert len(targets.LOCAL_SET) == 1
    numbers = array.array("i", [1, 2, 3])
    rebuild, args = managers.reduce_array(numbers)
    assert rebuild(*args) == numbers
    rebuild, args = managers.rebuild_as_list({"a": 1}.keys())
    assert rebuild(*args) == ["a"]
    methods = managers.all_methods(targets.FooBar())
    assert {"f", "g", "_h", "__init__"} <= set(methods)
    assert managers.public_methods(targets.FooBar()) == ["f", "g"]
    assert managers.HAS_SHMEM
    assert managers.State.SHUTDOWN == 2
    here.close()
    there.close()


def test_number_of_objects_counts_what_clients_hold(family):
    with family.manager() as manager:
        outer = manager.dict()
        inner = manager.list([1])
        outer["inner"] = inner
        del inner  # only the dict on the server refers to it now
        loop = manager.list()
        loop.append(loop)  # only itself
        del loop
        gc.collect()
        manager._number_of_objects()  # carries plait's pending drops
        assert manager._number_of_objects() == 1
        assert outer["inner"][:] == [1]
        del outer


def test_a_method_that_raised_keeps_nothing_alive(family):
    from tests.managers.conftest import PLAIT

    with family.manager() as manager:
        inner = manager.list([1])
        outer = manager.list([inner])
        # A ListProxy iterates by index: the server's IndexError ends the loop.
        assert [element[:] for element in outer] == [[1]]
        del inner, outer
        gc.collect()
        manager._number_of_objects()
        assert manager._number_of_objects() == 0
        if family is PLAIT:  # the inner list too, which only the outer one held
            assert manager.statistics()["objects"] == 0


def test_xmlrpclib_on_a_unix_address_serves_the_standard_types():
    # Local clients of an xmlrpclib manager are served by the server's loop, without
    # rings. (The standard library fails at d.keys() here: it cannot marshal a view.)
    from tests.managers.conftest import PLAIT

    manager = PLAIT.managers.SyncManager(serializer="xmlrpclib", ctx=fork_context(PLAIT))
    with manager:
        d = manager.dict()
        d["a"] = (1, 2)
        assert d["a"] == [1, 2] and sorted(d.keys()) == ["a"] and list(iter(d)) == ["a"]
        with pytest.raises(KeyError):
            d["missing"]
        q = manager.Queue()
        q.put(b"x")
        assert q.get(True, 10) == b"x"
        assert manager.statistics()["ring_connections"] == 0
        del d, q


def test_get_spawning_popen_is_none_outside_a_start_as_in_the_standard_module():
    import multiprocessing.managers

    from tests.managers.conftest import PLAIT

    assert PLAIT.managers.get_spawning_popen() is multiprocessing.managers.get_spawning_popen()
