"""The rings of local clients (plait/managers/rings.py): what takes the fast path, what
falls back to the socket, and what happens when either side misbehaves or dies."""

from __future__ import annotations

import os
import pickle
import signal
import threading

import pytest

import plait.multiprocessing as pmp
from plait.ipc import Client
from plait.managers import ManagerGoneError, RemoteError, SyncManager, proxy, rings
from tests.support import wait_until


def _fork_manager() -> SyncManager:
    m = SyncManager(ctx=pmp.get_context("fork"))
    m.start()
    return m


def _link(m: SyncManager) -> rings.RingLink:
    """This thread's connection to ``m`` (its rings)."""
    link = proxy.client_for(m.address, m._authkey).connection()
    assert isinstance(link, rings.RingLink)
    return link


@pytest.mark.timeout(60)
def test_calls_that_cannot_block_take_the_rings(no_leaks):
    with _fork_manager() as m:
        d = m.dict()
        before = m.statistics()["ring_requests"]
        for i in range(100):
            d[i] = i
        assert sum(d.values()) == sum(range(100))
        stats = m.statistics()
        assert stats["ring_connections"] == 1
        assert stats["ring_requests"] - before >= 101
        del d


@pytest.mark.timeout(60)
def test_without_rings_the_same_calls_give_the_same_results(no_leaks, monkeypatch):
    def scenario(m):
        d, q, lst = m.dict(), m.Queue(), m.list()
        d.update(a=1, b=[1, 2])
        lst.extend(range(5))
        d["l"] = lst
        q.put(("x", 1))
        return sorted(d.keys()), d["l"][:], q.get(timeout=10), m.statistics()["ring_requests"]

    with _fork_manager() as m:
        fast = scenario(m)
    monkeypatch.setattr(proxy, "USE_RINGS", False)
    with _fork_manager() as m:
        slow = scenario(m)
    assert fast[:3] == slow[:3] == (["a", "b", "l"], [0, 1, 2, 3, 4], ("x", 1))
    assert fast[3] > 0 and slow[3] == 0


@pytest.mark.timeout(60)
def test_large_requests_and_replies_travel_on_the_socket(no_leaks):
    big = bytes(range(256)) * (rings.RING_MESSAGE_MAX // 128)  # twice the ring limit
    with _fork_manager() as m:
        d = m.dict()
        d["big"] = big
        assert d["big"] == big
        d["small"] = 1  # and the rings serve the next call
        before = m.statistics()["ring_requests"]
        assert d["small"] == 1
        assert m.statistics()["ring_requests"] > before
        del d


@pytest.mark.timeout(60)
def test_a_reply_larger_than_the_socket_buffers_reaches_its_client_and_others_go_on(no_leaks):
    big = b"x" * (8 << 20)  # the socket holds a fraction: the client must be reading
    with _fork_manager() as m:
        d = m.dict()
        d["big"] = big
        others = []

        def read_it_too(proxy):
            others.append(proxy["big"] == big)

        reader = threading.Thread(target=read_it_too, args=(d,))
        reader.start()  # another connection of this process, served by the same thread
        assert d["big"] == big
        reader.join(30)
        d["small"] = 1
        assert others == [True] and d["small"] == 1
        del d, reader


class _LockMaker:
    def make(self):
        return threading.Lock()


class _LockManager(SyncManager):
    pass


_LockManager.register("LockMaker", _LockMaker)


@pytest.mark.timeout(60)
def test_a_reply_that_pickles_nowhere_gets_its_error_and_the_rings_go_on(no_leaks):
    m = _LockManager(ctx=pmp.get_context("fork"))
    m.start()
    with m:
        maker = m.LockMaker()
        with pytest.raises(RemoteError, match="cannot send the reply"):
            maker.make()  # announced on the socket before it failed: the error follows it
        d = m.dict()
        d["after"] = 1
        assert d["after"] == 1
        del d, maker


@pytest.mark.timeout(60)
def test_objects_carrying_fds_travel_on_the_socket(no_leaks):
    here, there = pmp.Pipe()
    with _fork_manager() as m:
        lst = m.list()
        lst.append(there)  # the request carries an fd: the socket takes it
        got = lst[0]  # and so does the reply (announced in the outbox)
        here.send("through the managed copy")
        assert got.recv(timeout=10) == "through the managed copy"
        got.close()
        del lst
    here.close()
    there.close()


@pytest.mark.timeout(60)
def test_calls_that_wait_are_redirected_and_the_rings_go_on(no_leaks):
    with _fork_manager() as m:
        q = m.Queue()
        got = []
        reader = threading.Thread(target=lambda: got.append(q.get(timeout=30)))
        reader.start()
        assert wait_until(lambda: m.statistics()["threads"] == 1, 10)  # it waits in a thread
        q.put("late")
        reader.join(30)
        assert got == ["late"]
        before = m.statistics()["ring_requests"]
        q.put(1)
        assert q.get(timeout=10) == 1  # an item is there: the rings answer
        assert m.statistics()["ring_requests"] >= before + 2


@pytest.mark.timeout(60)
def test_garbage_in_the_inbox_gets_an_error_reply(no_leaks):
    with _fork_manager() as m:
        d = m.dict(a=1)
        link = _link(m)
        link._inbox.put(rings.PLAIN, (link._token + b"\x80garbage",))
        kind, (exc, _) = link.recv()
        assert isinstance(exc, RemoteError) and "cannot unpickle the request" in str(exc)
        link._inbox.put(rings.PLAIN, (link._token + pickle.dumps("not a request"),))
        kind, (exc, _) = link.recv()
        assert isinstance(exc, RemoteError) and "malformed request" in str(exc)
        link._inbox.put(rings.PLAIN, (os.urandom(rings.TOKEN_SIZE) + b"unknown token",))
        assert d["a"] == 1  # dropped: the next reply is this call's
        del d


@pytest.mark.timeout(60)
def test_a_client_that_never_reads_its_replies_loses_only_its_connection(no_leaks):
    with _fork_manager() as m:
        d = m.dict(a=1)
        pid = os.fork()
        if pid == 0:  # floods the server with requests, reads nothing, is cut off
            code = 1
            try:
                link = _link(m)
                entry = (link._token + pickle.dumps((None, "dummy", (), {}, None)),)
                for _ in range(20_000):  # the outbox holds ~2,000 replies
                    link._inbox.put(rings.PLAIN, entry, True, 10)
                if link.conn.poll(30):
                    try:
                        link.conn.recv()
                    except EOFError:
                        code = 0  # the server hung up on it
            except BaseException:
                pass
            os._exit(code)
        try:
            assert d["a"] == 1
        finally:
            _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0  # it was cut off while alive
        assert wait_until(lambda: m.statistics()["sessions"] == 1, 10)
        assert d["a"] == 1
        del d


@pytest.mark.timeout(60)
def test_a_killed_server_fails_calls_waiting_on_the_rings(no_leaks):
    m = _fork_manager()
    d = m.dict(a=1)
    assert d["a"] == 1
    os.kill(m._process.pid, signal.SIGKILL)
    m._process.join(10)
    with pytest.raises(ManagerGoneError, match="__getitem__"):
        d["a"]
    m.shutdown()  # already gone: only cleans up here
    del d


@pytest.mark.timeout(120)
def test_clients_killed_in_the_middle_of_ring_calls_never_disturb_the_others(no_leaks):
    with _fork_manager() as m:
        d = m.dict()
        for round_ in range(30):
            pid = os.fork()
            if pid == 0:  # calls as fast as it can until it is killed, at any point
                try:
                    i = 0
                    while True:
                        d[i % 10] = i
                        i += 1
                finally:
                    os._exit(1)
            assert wait_until(lambda: m.statistics()["sessions"] == 2, 30)
            for i in range(200):  # this client's calls go on meanwhile
                d[("main", i)] = round_
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            assert wait_until(lambda: m.statistics()["sessions"] == 1, 30)
        assert all(d[("main", i)] == 29 for i in range(200))
        assert m.statistics()["ring_connections"] == 1
        del d


@pytest.mark.timeout(60)
def test_a_client_whose_pid_the_socket_does_not_see_keeps_the_socket(no_leaks):
    """As a client in another pid namespace (a container): the rings' locks would take
    its live pid for a dead one, so it gets no rings and is served on its socket."""
    with _fork_manager() as m:
        conn = Client(m.address, authkey=m._authkey)
        try:
            conn.send(("#hello", os.urandom(12), "rings", os.getpid() + 4_000_000))
            assert conn.recv(timeout=10) == ("#socket",)
            conn.send((None, "statistics", (), {}, None))  # served on the socket
            kind, stats = conn.recv(timeout=10)
            assert kind == proxy.RETURN and stats["ring_connections"] == 0
        finally:
            conn.close()
