"""Scenarios of ``wait``: connections, sockets, process sentinels, timeouts."""

from __future__ import annotations

import os
import signal
import socket

import pytest

import plait.ipc
from tests.support import child

pytestmark = pytest.mark.usefixtures("no_leaks")


def exit_at_once() -> None:
    pass


def sleep_forever() -> None:
    signal.pause()


@pytest.mark.timeout(30)
def test_wait_over_fifty_connections_returns_exactly_the_ready_ones(api):
    pairs = [api.Pipe() for _ in range(50)]
    try:
        readers = [b for _, b in pairs]
        assert api.wait(readers, timeout=0.01) == []
        ready = set(range(3, 50, 7))
        for i in ready:
            pairs[i][0].send(i)
        got = api.wait(readers, timeout=10)
        assert sorted(readers.index(c) for c in got) == sorted(ready)
        assert sorted(c.recv() for c in got) == sorted(ready)
        assert api.wait(readers, timeout=0) == []
        pairs[0][0].close()  # end of file counts as ready
        assert api.wait(readers, timeout=10) == [readers[0]]
    finally:
        for a, b in pairs:
            a.close()
            b.close()


@pytest.mark.timeout(30)
def test_wait_on_process_sentinels_and_connections_together(api):
    a, b = api.Pipe()
    with child(sleep_forever) as sleeper, child(exit_at_once) as quick:
        quick.join(10)
        got = api.wait([b, sleeper.sentinel, quick.sentinel], timeout=10)
        assert got == [quick.sentinel]
        sleeper.kill()
        sleeper.join(10)
        assert api.wait([b, sleeper.sentinel], timeout=10) == [sleeper.sentinel]
    a.close()
    b.close()


def test_wait_on_sockets_and_objects_with_fileno(api):
    left, right = socket.socketpair()
    r, w = os.pipe()
    with left, right:
        assert api.wait([left, r], timeout=0) == []
        right.sendall(b"x")
        os.write(w, b"y")
        got = api.wait([left, r], timeout=10)
        assert set(map(id, got)) == {id(left), id(r)}
    os.close(r)
    os.close(w)


def test_wait_with_nothing_to_wait_for_returns_at_once(api):
    assert api.wait([], timeout=0) == []


def test_wait_rejects_objects_without_fileno():
    with pytest.raises(TypeError, match="fileno"):
        plait.ipc.wait([object()], timeout=0)


def test_wait_rejects_a_closed_connection():
    a, b = plait.ipc.Pipe()
    b.close()
    with pytest.raises(OSError):
        plait.ipc.wait([b], timeout=0)
    a.close()
