"""plait managers under hostile or unlucky conditions: keys, garbage, kills, shutdown."""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import plait.multiprocessing as pmp
from plait._core.framing import HEADER, PLAIN
from plait.ipc import Client
from plait.managers import BaseManager, ManagerGoneError, RemoteError, SyncManager, batch
from tests.support import run_python, wait_until

from . import targets

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = b"tcp key"


class CounterManager(BaseManager):
    pass


CounterManager.register("Counter", targets.Counter)


@pytest.fixture
def tcp_manager():
    m = CounterManager(address=("127.0.0.1", 0), authkey=KEY, ctx=pmp.get_context("fork"))
    m.start()
    yield m
    m.shutdown()


@pytest.fixture
def tcp_server_program():
    """The server program of ``targets``, in its own process tree; yields its port."""
    program = targets.SERVER_PROGRAM.format(tests=TESTS_DIR)
    proc = subprocess.Popen(
        [sys.executable, "-c", program], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        yield int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()


def run_client(port: int, key: bytes) -> subprocess.CompletedProcess:
    return run_python(
        "-c", targets.CLIENT_PROGRAM, str(port), key.decode(), timeout=60, start_new_session=True
    )


@pytest.mark.timeout(90)
def test_custom_class_served_on_tcp_to_an_unrelated_process(tcp_server_program):
    done = run_client(tcp_server_program, KEY)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "7 101 AutoProxy[Counter]"
    assert lines[1].startswith("AttributeError") and "'_hidden'" in lines[1]
    again = run_client(tcp_server_program, KEY)  # the shared object kept its state
    assert again.stdout.splitlines()[0] == "7 102 AutoProxy[Counter]"


@pytest.mark.timeout(90)
def test_wrong_key_is_refused_and_the_server_serves_on(tcp_server_program):
    done = run_client(tcp_server_program, b"wrong key")
    assert done.returncode == 3
    assert done.stdout.startswith("AuthenticationError")
    assert run_client(tcp_server_program, KEY).returncode == 0


@pytest.mark.timeout(60)
def test_tcp_needs_a_key_and_errors_name_the_cause():
    with pytest.raises(ValueError, match="authkey"):
        SyncManager(address=("127.0.0.1", 0))
    with pytest.raises(ValueError, match="authkey"):
        SyncManager(address=("127.0.0.1", 0), authkey=b"")
    with pytest.raises(ValueError, match="serializer"):
        SyncManager(serializer="json")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    m = SyncManager(address=("127.0.0.1", port), authkey=KEY)
    with pytest.raises(ConnectionRefusedError, match=str(port)):
        m.connect()


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(garbage=st.binary(min_size=0, max_size=600))
def test_garbage_never_disturbs_the_server(tcp_manager, garbage):
    with socket.create_connection(tcp_manager.address, timeout=10) as raw:
        raw.sendall(garbage)
    c = tcp_manager.Counter(1)
    assert c.add(1) == 2


@pytest.mark.timeout(60)
def test_garbage_and_oversized_frames_from_an_authenticated_client(tcp_manager):
    c = tcp_manager.Counter(0)
    conn = Client(tcp_manager.address, authkey=KEY)
    conn.send(("#hello", b"x" * 12))
    conn.send_bytes(b"not a pickle")
    kind, (exc, _) = conn.recv(timeout=10)
    assert "unpickle" in str(exc)
    conn.send(("not", "a", "request"))
    assert "malformed" in str(conn.recv(timeout=10)[1][0])
    raw = socket.socket(fileno=os.dup(conn.fileno()))
    raw.sendall(HEADER.pack(PLAIN, 0, 0, 0, 1 << 40))  # announces a terabyte
    raw.settimeout(10)
    assert raw.recv(100) == b""  # the server dropped that connection...
    raw.close()
    conn.close()
    assert c.add(5) == 5  # ...and only that one


@pytest.mark.timeout(90)
def test_client_killed_mid_call_others_work_and_its_objects_are_released(no_leaks):
    ctx = pmp.get_context("fork")
    with SyncManager(ctx=ctx, authkey=b"k") as m:
        q, ready = m.Queue(), m.Event()
        before = m._number_of_objects()
        child = ctx.Process(target=targets.create_then_block, args=(m.address, b"k", ready, q))
        child.start()
        assert ready.wait(30)
        assert m._number_of_objects() == before + 2
        counter_user = m.dict()
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        assert child.exitcode == -signal.SIGKILL
        counter_user["still"] = "working"
        assert counter_user["still"] == "working"
        q.put("wake the served thread")  # the dead client's call returns; its reply fails
        assert wait_until(lambda: m._number_of_objects() == before + 1, 10)
        del q, ready, counter_user


@pytest.mark.timeout(60)
def test_killed_during_a_slow_method(no_leaks):
    ctx = pmp.get_context("fork")
    with CounterManager(ctx=ctx) as m:
        c = m.Counter()
        child = ctx.Process(target=targets.slow_then_never_reached, args=(c,))
        child.start()
        assert wait_until(lambda c=c: c.sleeping() == 1, 30)  # the child is inside the call
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        assert c.add(1) == 1  # served by another thread while the slow call sleeps
        del c


@pytest.mark.timeout(60)
def test_shutdown_with_live_proxies_gives_a_clear_error(no_leaks):
    m = SyncManager(ctx=pmp.get_context("fork"))
    m.start()
    d = m.dict(a=1)
    address = m.address
    m.shutdown()
    with pytest.raises(ManagerGoneError, match="__getitem__") as info:
        d["a"]
    assert repr(address) in str(info.value) and "'dict'" in str(info.value)
    assert isinstance(info.value, ConnectionError)
    copy = pickle.loads(pickle.dumps(info.value))
    assert (str(copy), copy.address, copy.method) == (str(info.value), address, "__getitem__")
    with pytest.raises(Exception, match="shut down"):
        m.dict()
    del d


@pytest.mark.timeout(60)
def test_shutdown_seen_from_another_process(no_leaks):
    m = SyncManager(ctx=pmp.get_context("fork"))
    m.start()
    d = m.dict(a=1)
    here, there = pmp.Pipe()
    pid = os.fork()
    if pid == 0:  # uses d, waits until the server is gone, uses d again
        code = 1
        try:
            there.send(d["a"])
            there.recv(timeout=30)
            d["a"]
        except ManagerGoneError as exc:
            there.send(str(exc))
            code = 0
        finally:
            os._exit(code)
    there.close()
    assert here.recv(timeout=30) == 1
    m.shutdown()
    here.send("go")
    assert "is gone" in here.recv(timeout=30)
    assert os.waitpid(pid, 0)[1] == 0
    here.close()
    del d


@pytest.mark.timeout(60)
def test_batch_sends_many_calls_in_one_round_trip(no_leaks):
    with SyncManager(ctx=pmp.get_context("fork")) as m:
        d = m.dict()
        with batch():
            futures = [d.__setitem__(i, i * i) for i in range(3000)]
            got = d.get(2)
        assert all(f.result() is None for f in futures)
        assert got.result() == 4 and len(d) == 3000
        with pytest.raises(KeyError):
            with batch():
                d["missing"]
                later = d.get(1)
        assert later.result() == 1
        del d


@pytest.mark.timeout(60)
def test_objects_of_dropped_proxies_are_released(no_leaks):
    with SyncManager(ctx=pmp.get_context("fork")) as m:
        lists = [m.list([i]) for i in range(5)]
        assert m._number_of_objects() == 5
        d = m.dict()
        d["kept"] = lists[0]  # the dict holds this one on the server
        del lists
        m.dict()  # any request carries the drops
        assert m.statistics()["objects"] == 2
        assert m._number_of_objects() == 1  # as the standard library counts: the held one
        assert d["kept"][:] == [0]
        del d
        m._number_of_objects()
        assert m._number_of_objects() == 0


@pytest.mark.timeout(60)
def test_proxy_pickled_to_a_spawned_child_outlives_the_parents_copy(no_leaks):
    ctx = pmp.get_context("spawn")
    with SyncManager(ctx=ctx) as m:
        p = ctx.Process(target=targets.append_pid, args=(m.list(),))
        m.dict()  # the parent's drop of its only proxy reaches the server now
        p.start()
        p.join(30)
        assert p.exitcode == 0


@contextlib.contextmanager
def served_in_this_process(manager_type):
    """A server of ``manager_type`` run by a thread of this process (``get_server``), and
    a manager connected to it; the server must have stopped at the end."""
    server = manager_type(authkey=b"local").get_server()
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        client = manager_type(address=server.address, authkey=b"local")
        client.connect()
        yield server, client
        client.shutdown()
    finally:
        server.stop()
        thread.join(10)
    assert not thread.is_alive()


def test_server_in_this_process_with_get_server(no_leaks):
    with served_in_this_process(CounterManager) as (_, client):
        c = client.Counter(3)
        assert c.add(1) == 4
        del c


def test_program_with_a_manager_exits_cleanly():
    program = textwrap.dedent(
        """
        from plait.managers import Manager
        m = Manager()
        d = m.dict(x=1)
        print(d["x"])
        """
    )
    done = run_python("-c", program, timeout=60)
    assert done.returncode == 0 and done.stdout == "1\n", done.stderr


@pytest.mark.timeout(60)
def test_custom_key_travels_with_proxies_to_spawned_children(no_leaks):
    ctx = pmp.get_context("spawn")
    with SyncManager(ctx=ctx, authkey=b"not the process key") as m:
        items = m.list()
        p = ctx.Process(target=targets.append_pid, args=(items,))
        p.start()
        p.join(30)
        assert items[:] == [p.pid]
        del items


@pytest.mark.timeout(60)
def test_server_stops_when_the_program_that_started_it_is_killed():
    program = textwrap.dedent(
        """
        import time
        from plait.managers import Manager
        m = Manager()
        print(m._process.pid, flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    try:
        server_pid = int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()

    def gone() -> bool:
        try:
            with open(f"/proc/{server_pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError:
            return True

    assert wait_until(gone, 20)


@pytest.mark.timeout(60)
def test_proxy_inherited_across_fork_and_used_by_both(no_leaks):
    with SyncManager(ctx=pmp.get_context("fork")) as m:
        d = m.dict(parent=0)
        d["parent"] += 1  # the parent has a connection before the fork
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                d["child"] = os.getpid()
                del d  # the child's drop must not free the parent's object
                code = 0
            finally:
                os._exit(code)
        assert os.waitpid(pid, 0)[1] == 0
        d["parent"] += 1
        assert d.copy() == {"parent": 2, "child": pid}
        del d


@pytest.mark.timeout(60)
def test_statistics_show_where_connections_are_served(no_leaks):
    with SyncManager(ctx=pmp.get_context("fork")) as m:
        d = m.dict()
        d["x"] = 1
        stats = m.statistics()
        assert stats["objects"] == 1 and stats["sessions"] == 1
        # the rings may answer before the loop has taken the connection from its admitter,
        # whose thread counts until it has handed the connection over
        assert wait_until(lambda: m.statistics()["loop_connections"] == 1, 10)
        assert wait_until(lambda: m.statistics()["threads"] == 0, 10)
        lock = m.Lock()
        with lock:  # may block: this connection gets its own thread from now on
            assert m.statistics()["threads"] == 1
        del d, lock


@pytest.mark.timeout(60)
def test_creating_objects_leaves_the_connection_to_the_loop(no_leaks):
    with SyncManager(ctx=pmp.get_context("fork")) as m:
        made = [m.Queue(), m.Event(), m.Lock(), m.RLock(), m.Condition(), m.Barrier(2)]
        made[0].put("x")
        assert made[0].get() == "x"  # an item is there: answered by the loop too
        assert m.statistics()["threads"] == 0
        assert wait_until(lambda: m.statistics()["loop_connections"] == 1, 10)
        del made
    with CounterManager(ctx=pmp.get_context("fork")) as m:
        c = m.Counter(5)  # a user's type is made in a thread, which gives the connection back
        assert wait_until(lambda: m.statistics()["threads"] == 0, 10)
        assert m.statistics()["loop_connections"] == 1
        assert c.add(1) == 6  # a user's methods may block: a thread serves from now on
        assert m.statistics()["threads"] == 1
        del c


@pytest.mark.timeout(60)
@pytest.mark.parametrize("address", [None, ("127.0.0.1", 0)], ids=["unix", "tcp"])
def test_client_killed_in_a_call_that_never_returns_releases_its_objects(address, no_leaks):
    ctx = pmp.get_context("fork")
    with SyncManager(address=address, ctx=ctx, authkey=b"k") as m:
        ready = m.Event()
        child = ctx.Process(target=targets.create_then_wait_forever, args=(m.address, b"k", ready))
        child.start()
        assert ready.wait(30)
        assert m._number_of_objects() == 3
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        # The server's thread still waits on the event; the dead client's list and
        # event are out of the table at once (the event dies when the wait ends).
        assert wait_until(lambda: m._number_of_objects() == 1, 10)
        assert m.statistics()["sessions"] == 1
        del ready


@pytest.mark.timeout(60)
def test_a_proxy_in_the_server_finalized_under_the_table_lock(no_leaks):
    """A collection may run inside any region that holds the server's lock and finalize
    a proxy living in the server (here: a managed list taken out of a managed dict),
    whose __del__ takes the lock again: it must not deadlock."""
    with served_in_this_process(SyncManager) as (server, client):
        d, lst = client.dict(), client.list([1])
        d["l"] = lst  # the dict in the server now holds a proxy of the list
        inner = next(e.obj for e in server.table.objects.values() if type(e.obj) is dict)
        proxy_in_server = inner.pop("l")
        cycle = [proxy_in_server]
        cycle.append(cycle)  # garbage only a collection frees
        del proxy_in_server, cycle

        def collect_under_the_lock():
            with server.table.lock:
                gc.collect()  # the proxy's __del__ runs here, under the lock

        collector = threading.Thread(target=collect_under_the_lock, daemon=True)
        collector.start()
        collector.join(20)
        assert not collector.is_alive(), "the finalizer deadlocked on the server's lock"
        assert lst[:] == [1]
        del d, lst


class _Exits:
    def __init__(self, at_birth=False):
        if at_birth:
            raise SystemExit(4)

    def exit(self):
        raise SystemExit(3)  # sys.exit() in a method, or argparse refusing its input

    def ping(self):
        return "pong"


class _ExitManager(BaseManager):
    pass


_ExitManager.register("Exits", _Exits)
_ExitManager.register("dict", dict)


@pytest.mark.timeout(60)
def test_system_exit_in_a_managed_method_is_an_error_of_that_call_only(no_leaks):
    with _ExitManager(ctx=pmp.get_context("fork")) as m:
        keep, obj = m.dict(a=1), m.Exits()
        with pytest.raises(RemoteError, match=r"Exits.exit\(\) raised SystemExit\(3\)"):
            obj.exit()
        with pytest.raises(RemoteError, match="SystemExit"):
            m.Exits(at_birth=True)
        # The caller's session lives on: its objects, its connection.
        assert (keep.get("a"), obj.ping(), m._number_of_objects()) == (1, "pong", 2)
        del keep, obj
