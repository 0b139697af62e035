"""``multiprocessing.dummy`` on threads: the same scenarios on the standard module and on
plait's face, expecting the same results; then what plait adds (timeouts, one-way pipes,
a closed listener that refuses clients)."""

from __future__ import annotations

import array
import multiprocessing.dummy
import multiprocessing.dummy.connection
import queue
import threading
import time

import pytest

import plait.multiprocessing.dummy
import plait.multiprocessing.dummy.connection
from plait.pool import ThreadPool
from tests.support import wait_until

MODULES = [multiprocessing.dummy, plait.multiprocessing.dummy]

pytestmark = pytest.mark.timeout(60)


def _square(x: int) -> int:
    return x * x


def _echo(conn) -> None:
    """Send back every message until b"" (the end) arrives."""
    for message in iter(conn.recv_bytes, b""):
        conn.send_bytes(message)


def _connect_and_send(address, connection, message) -> None:
    conn = connection.Client(address)
    conn.send(message)
    conn.close()


def _send_later(conn, delay: float, message) -> None:
    time.sleep(delay)
    conn.send(message)


# -- the face ------------------------------------------------------------------------------


def test_face_has_the_standard_names():
    for name in multiprocessing.dummy.__all__:
        assert hasattr(plait.multiprocessing.dummy, name), name
    assert set(plait.multiprocessing.dummy.__all__) == set(multiprocessing.dummy.__all__)
    for name in ("Value", "Array", "Namespace", "DummyProcess", "shutdown", "connection"):
        assert hasattr(plait.multiprocessing.dummy, name), name
    for name in multiprocessing.dummy.connection.__all__ + ["families", "Connection"]:
        assert hasattr(plait.multiprocessing.dummy.connection, name), name
    assert plait.multiprocessing.dummy.connection.families == [None]


def test_face_is_plaits_own_code():
    face = plait.multiprocessing.dummy
    with face.Pool(1) as pool:
        assert type(pool) is ThreadPool
    assert face.Process is face.DummyProcess
    assert issubclass(face.Process, threading.Thread)
    assert face.Process is not multiprocessing.dummy.Process
    assert face.Pipe is not multiprocessing.dummy.Pipe
    assert face.Queue.__module__.startswith("plait.")
    assert face.JoinableQueue is face.Queue
    assert face.current_process is threading.current_thread


# -- Pool ----------------------------------------------------------------------------------


def _pool_outcomes(mod):
    with mod.Pool(3) as pool:
        mapped = pool.map(_square, range(20))
        applied = pool.apply_async(_square, (7,)).get(timeout=10)
        ordered = list(pool.imap(_square, range(10)))
        unordered = sorted(pool.imap_unordered(_square, range(10), chunksize=3))
        starred = pool.starmap(pow, [(2, 3), (3, 2)])
        try:
            pool.apply(divmod, (1, 0))
            error = None
        except ZeroDivisionError as exc:
            error = type(exc).__name__
    return mapped, applied, ordered, unordered, starred, error


def test_pool_gives_the_same_results():
    assert _pool_outcomes(plait.multiprocessing.dummy) == _pool_outcomes(multiprocessing.dummy)


def test_pool_initializer_runs_in_each_worker_thread():
    def outcome(mod):
        seen = []
        with mod.Pool(2, seen.append, ("ready",)) as pool:
            pool.map(_square, range(4))
        return seen

    assert outcome(plait.multiprocessing.dummy) == outcome(multiprocessing.dummy)


# -- Process ---------------------------------------------------------------------------------


def _process_outcomes(mod):
    seen = mod.Queue()
    release = mod.Event()

    def work(tag):
        seen.put((tag, mod.current_process().name))
        release.wait(10)

    p = mod.Process(target=work, args=("a",), name="worker-a")
    record = {"before start": (p.exitcode, p.is_alive(), p.name, p.daemon)}
    p.daemon = True
    p.start()
    record["got"] = seen.get(timeout=10)
    record["running"] = (p.exitcode, p.is_alive(), p in mod.active_children())
    p.join(0.01)
    record["join timed out"] = p.is_alive()
    release.set()
    p.join(10)
    record["after join"] = (p.exitcode, p.is_alive(), p in mod.active_children())
    record["current"] = mod.current_process() is threading.main_thread()
    try:
        p.start()
    except RuntimeError as exc:
        record["start twice"] = type(exc).__name__
    return record


def test_process_lifecycle_is_the_same():
    plaits = _process_outcomes(plait.multiprocessing.dummy)
    assert plaits == _process_outcomes(multiprocessing.dummy)
    assert plaits["after join"] == (0, False, False)


def test_process_started_by_another_thread_is_refused():
    def outcome(mod):
        p = mod.Process(target=lambda: None)
        errors = []

        def start_it():
            try:
                p.start()
            except RuntimeError as exc:
                errors.append(type(exc).__name__)

        t = threading.Thread(target=start_it)
        t.start()
        t.join(10)
        return errors, p.exitcode

    assert outcome(plait.multiprocessing.dummy) == outcome(multiprocessing.dummy)


def test_children_of_a_process_are_its_own():
    def outcome(mod):
        found = mod.Queue()
        release = threading.Event()  # the child runs until the parent has looked

        def parent():
            child = mod.Process(target=release.wait, args=(10,))
            child.start()
            found.put(mod.active_children() == [child])
            release.set()
            child.join(10)
            found.put(mod.active_children())

        p = mod.Process(target=parent)
        p.start()
        p.join(10)
        return found.get(timeout=1), found.get(timeout=1), p not in mod.active_children()

    assert outcome(plait.multiprocessing.dummy) == outcome(multiprocessing.dummy)


def test_process_result_keeps_the_return_value():
    p = plait.multiprocessing.dummy.Process(target=_square, args=(9,))
    p.start()
    assert p.result(timeout=10) == 81
    assert p.exitcode == 0


# -- Pipe, Listener, Client ------------------------------------------------------------------------


def _pipe_outcomes(mod):
    conn, child_conn = mod.Pipe()
    p = mod.Process(target=_echo, args=(child_conn,))
    p.start()
    record = {"empty poll": (conn.poll(), conn.poll(-1), conn.poll(0.05))}
    conn.send([1, 2.25, None])
    record["object"] = conn.recv()
    conn.send_bytes(b"hello")
    record["bytes"] = conn.recv_bytes()
    big = b"X" * (1 << 20)
    conn.send_bytes(big)
    record["big"] = conn.recv_bytes() == big
    conn.send("ping")
    record["poll after"] = (conn.poll(5), conn.poll(), conn.recv(), conn.poll())
    conn.send_bytes(b"")
    p.join(10)
    record["exitcode"] = p.exitcode
    with conn:
        pass
    return record


def test_pipe_round_trips_are_the_same():
    assert _pipe_outcomes(plait.multiprocessing.dummy) == _pipe_outcomes(multiprocessing.dummy)


# A poll that is never woken returns only when its 100 s pass: the timeout mark fails it.
@pytest.mark.timeout(30)
def test_poll_wakes_when_a_message_arrives():
    def outcome(mod):
        a, b = mod.Pipe()
        sender = mod.Process(target=_send_later, args=(b, 0.2, "late"))
        sender.start()
        ready = a.poll(100)
        sender.join(10)
        return ready, a.poll(), a.recv(), a.poll()

    assert outcome(plait.multiprocessing.dummy) == outcome(multiprocessing.dummy)


def test_listener_and_client_round_trip():
    def outcome(mod):
        connection = mod.connection
        results = []
        for family in connection.families:
            with connection.Listener(family=family) as listener:
                p = mod.Process(
                    target=_connect_and_send, args=(listener.address, connection, "hello")
                )
                p.start()
                conn = listener.accept()
                results.append(conn.recv())
                conn.send("back")
                p.join(10)
                client = connection.Client(listener.address)
                served = listener.accept()
                served.send_bytes(b"hi")
                results.append((client.poll(5), client.recv_bytes()))
        return results

    assert outcome(plait.multiprocessing.dummy) == outcome(multiprocessing.dummy)


def test_pipe_connection_api():
    """What plait adds to the standard dummy connection, checked against real pipes' rules."""
    connection = plait.multiprocessing.dummy.connection
    reader, writer = connection.Pipe(duplex=False)
    assert (reader.readable, reader.writable, writer.readable, writer.writable) == (
        True,
        False,
        False,
        True,
    )
    with pytest.raises(OSError, match="read-only"):
        reader.send(1)
    with pytest.raises(OSError, match="write-only"):
        writer.recv()
    with pytest.raises(OSError, match="write-only"):
        writer.poll()
    with pytest.raises(TimeoutError):
        reader.recv(timeout=0.05)
    with pytest.raises(OSError, match="file descriptor"):
        reader.fileno()

    writer.send_bytes(b"abcdefgh", 2, 3)
    assert reader.recv_bytes() == b"cde"
    writer.send_bytes(bytearray(b"abcdefgh"), 6)
    assert reader.recv_bytes() == b"gh"
    for offset, size in [(9, None), (-1, None), (2, 7), (0, -1)]:
        with pytest.raises(ValueError):
            writer.send_bytes(b"abcdefgh", offset, size)

    buffer = array.array("i", [0] * 4)
    writer.send_bytes(array.array("i", [7, 8]))
    assert reader.recv_bytes_into(buffer, buffer.itemsize) == 2 * buffer.itemsize
    assert list(buffer) == [0, 7, 8, 0]
    writer.send_bytes(b"y" * 20)
    with pytest.raises(plait.multiprocessing.BufferTooShort) as caught:
        reader.recv_bytes_into(bytearray(4))
    assert caught.value.args == (b"y" * 20,)
    writer.send_bytes(b"long message")
    with pytest.raises(OSError, match="bad message length"):
        reader.recv_bytes(4)

    reader.close()
    writer.send("still open")  # closing a thread-backed end changes nothing
    assert reader.recv() == "still open"


def test_closed_listener_refuses_clients_and_accepts():
    connection = plait.multiprocessing.dummy.connection
    listener = connection.Listener()
    with pytest.raises(TimeoutError):
        listener.accept(timeout=0.05)
    listener.close()
    listener.close()
    with pytest.raises(ConnectionRefusedError):
        connection.Client(listener.address)
    with pytest.raises(OSError, match="closed"):
        listener.accept()


@pytest.mark.timeout(30)
def test_many_pollers_all_see_the_message():
    a, b = plait.multiprocessing.dummy.Pipe()
    seen = queue.Queue()
    pollers = [threading.Thread(target=lambda: seen.put(a.poll(100))) for _ in range(4)]
    for t in pollers:
        t.start()
    # All four wait inside poll() before the message comes: the wake-up is what is tested.
    assert wait_until(lambda: a._inbox.pollers == 4, 30)
    b.send("one")
    assert [seen.get(timeout=100) for _ in pollers] == [True] * 4
    for t in pollers:
        t.join(10)
    assert a.recv() == "one"
    assert not a.poll()


# -- Queue, Value, Array, Namespace, Manager -------------------------------------------------------


def _shared_objects(mod):
    q = mod.JoinableQueue()
    for item in range(3):
        q.put(item)
    got = [q.get(timeout=1) for _ in range(3)]
    for _ in got:
        q.task_done()
    q.join()
    try:
        q.get(timeout=0.01)
    except queue.Empty:
        empty = "Empty"
    value = mod.Value("i", 3)
    value.value += 4
    arr = mod.Array("d", [1.0, 2.0])
    arr[0] = 5.0
    ns = mod.Namespace(x=1, _hidden=2)
    ns.y = "z"
    manager = mod.Manager()
    shared = manager.dict(a=1), manager.list([1, 2]), manager.Namespace(k=0)
    mq = manager.Queue()
    mq.put("m")
    return (
        got,
        empty,
        repr(value),
        value.value,
        type(arr),
        arr.tolist(),
        repr(ns),
        (ns.x, ns._hidden),
        repr(shared[2]),
        shared[:2],
        mq.get(timeout=1),
        mod.shutdown(),
        mod.freeze_support(),
    )


def test_shared_objects_are_the_same():
    plaits = _shared_objects(plait.multiprocessing.dummy)
    assert plaits == _shared_objects(multiprocessing.dummy)
    assert plaits[2] == "<Value('i', 7)>"
    assert plaits[6] == "Namespace(x=1, y='z')"


def test_sync_primitives_work_across_dummy_processes():
    def outcome(mod):
        lock, counter = mod.Lock(), [0]
        barrier = mod.Barrier(3)

        def work():
            barrier.wait(10)
            for _ in range(1000):
                with lock:
                    counter[0] += 1

        procs = [mod.Process(target=work) for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(10)
        return counter[0], [p.exitcode for p in procs]

    assert outcome(plait.multiprocessing.dummy) == outcome(multiprocessing.dummy)


def test_value_lock_and_array_of_zeros():
    dummy = plait.multiprocessing.dummy
    value = dummy.Value("i", 0)
    with value.get_lock():
        value.value += 1
    assert value.value == 1
    lock = dummy.Lock()
    assert dummy.Value("i", 0, lock=lock).get_lock() is lock
    assert dummy.Array("i", 3) == array.array("i", [0, 0, 0])


def test_manager_is_a_context_manager_with_a_pool():
    with plait.multiprocessing.dummy.Manager() as manager:
        manager.start()
        with manager.Pool(2) as pool:
            assert pool.map(_square, [1, 2, 3]) == [1, 4, 9]
        assert isinstance(manager.Lock(), type(plait.multiprocessing.dummy.Lock()))
        assert "Pool" in dir(manager)
        with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
            manager.Nothing  # noqa: B018 - the lookup is the test


def test_a_client_waits_for_a_full_backlog_only_as_long_as_its_timeout():
    listener = plait.multiprocessing.dummy.connection.Listener(backlog=1)
    first = plait.multiprocessing.dummy.connection.Client(listener.address)
    with pytest.raises(TimeoutError):
        plait.multiprocessing.dummy.connection.Client(listener.address, timeout=0.1)
    server = listener.accept()
    first.send("still served")
    assert server.recv() == "still served"
    listener.close()
