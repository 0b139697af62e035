"""Scenarios of ``Pipe`` and ``Connection``: on the standard library and on plait alike,
then what only plait promises (limits, garbage, large buffers, passing connections)."""

from __future__ import annotations

import array
import contextlib
import os
import pickle
import signal
import socket
import struct
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import plait.ipc
from plait._core import fdpass, framing
from tests.support import child, python_with_fds

pytestmark = pytest.mark.usefixtures("no_leaks")


@contextlib.contextmanager
def pipe(api, **kwargs):
    """A pipe whose two ends close when the ``with`` block ends."""
    a, b = api.Pipe(**kwargs)
    with a, b:
        yield a, b


def echo(conn) -> None:
    """Send back each message doubled until None arrives."""
    while (msg := conn.recv()) is not None:
        conn.send(msg * 2)
    conn.close()


def greet_then_echo(conn) -> None:
    conn.send("hello from the child")
    echo(conn)


def sum_arrays(conn) -> None:
    """Answer each array with (its sum, whether it is writable) until None arrives."""
    while (arr := conn.recv()) is not None:
        conn.send((float(arr.sum()), arr.flags.writeable))
    conn.close()


def use_passed_connection(conn) -> None:
    """Receive a connection through ``conn`` and answer through the received one."""
    passed = conn.recv()
    passed.send(("through the passed connection", passed.recv()))
    passed.close()
    conn.close()


def sleep_forever(conn) -> None:
    signal.pause()


# -- the same scenarios on multiprocessing and on plait -------------------------------


@pytest.mark.timeout(30)
def test_pipe_carries_objects_both_ways_across_a_child(api):
    here, there = api.Pipe()
    with child(greet_then_echo, there) as process:
        there.close()
        assert here.recv() == "hello from the child"
        for msg in (21, "ab", [1, None], b"\x00" * 100_000, (1.5,)):
            here.send(msg)
            assert here.recv() == msg * 2
        here.send(None)
        process.join(10)
        assert process.exitcode == 0
    here.close()


@pytest.mark.timeout(30)
def test_recv_raises_eof_when_the_peer_process_dies(api):
    here, there = api.Pipe()
    with child(sleep_forever, there) as process:
        there.close()
        assert not here.poll(0.05)
        process.kill()
        process.join(10)
        assert here.poll(10)  # end of file is readable
        with pytest.raises(EOFError):
            here.recv()
    here.close()


def test_recv_raises_eof_once_queued_messages_are_read(api):
    a, b = api.Pipe()
    a.send(1)
    a.send_bytes(b"two")
    a.close()
    assert b.recv() == 1
    assert b.recv_bytes() == b"two"
    with pytest.raises(EOFError):
        b.recv()
    with pytest.raises(EOFError):
        b.recv_bytes()
    b.close()


def test_send_to_a_closed_peer_raises_oserror(api):
    a, b = api.Pipe()
    b.close()
    with pytest.raises(OSError):
        for _ in range(100):  # the first write may still land in the buffer
            a.send_bytes(b"x" * 100_000)
    a.close()


def test_send_bytes_offset_and_size(api):
    with pipe(api) as (a, b):
        a.send_bytes(b"hello world", 6)
        a.send_bytes(bytearray(b"hello world"), 0, 5)
        a.send_bytes(memoryview(b"abc"), 3)
        a.send_bytes(array.array("i", [1, 2, 3]), 4, 4)  # offset and size count bytes
        assert b.recv_bytes() == b"world"
        assert b.recv_bytes() == b"hello"
        assert b.recv_bytes() == b""
        assert b.recv_bytes() == array.array("i", [2]).tobytes()


@pytest.mark.parametrize(
    "args, error",
    [
        ((b"abc", -1), ValueError),
        ((b"abc", 4), ValueError),
        ((b"abc", 0, -1), ValueError),
        ((b"abc", 2, 2), ValueError),
        ((12345,), TypeError),
        (("text",), TypeError),
    ],
)
def test_send_bytes_rejects_bad_arguments(api, args, error):
    with pipe(api) as (a, b):
        with pytest.raises(error):
            a.send_bytes(*args)
        assert not b.poll()  # nothing was sent
        a.send_bytes(b"still usable")
        assert b.recv_bytes() == b"still usable"


def test_recv_bytes_into_fits_or_raises_buffer_too_short(api):
    with pipe(api) as (a, b):
        buf = bytearray(10)
        a.send_bytes(b"abcd")
        assert b.recv_bytes_into(buf, 3) == 4
        assert buf == b"\x00\x00\x00abcd\x00\x00\x00"
        a.send_bytes(b"0123456789")
        with pytest.raises(api.BufferTooShort) as info:
            b.recv_bytes_into(buf, 1)
        assert info.value.args[0] == b"0123456789"
        with pytest.raises(ValueError):
            b.recv_bytes_into(buf, -1)
        with pytest.raises(ValueError):
            b.recv_bytes_into(buf, 11)
        a.send_bytes(b"after")
        assert b.recv_bytes() == b"after"


def test_recv_bytes_with_maxlength_closes_on_a_longer_message(api):
    a, b = api.Pipe()
    a.send_bytes(b"x" * 100)
    with pytest.raises(OSError, match="bad message length"):
        b.recv_bytes(10)
    with pytest.raises(OSError):
        b.recv_bytes()  # the rest of that message is never read
    with pytest.raises(ValueError):
        a.recv_bytes(-1)
    a.close()
    b.close()


def test_bytes_and_pickles_interoperate(api):
    with pipe(api) as (a, b):
        a.send_bytes(pickle.dumps({"x": [1, 2]}))
        assert b.recv() == {"x": [1, 2]}
        a.send((1, "two"))
        assert pickle.loads(b.recv_bytes()) == (1, "two")
        arr = np.arange(1000)
        a.send(arr)
        assert (pickle.loads(b.recv_bytes()) == arr).all()


class _Sprung:
    count = 0


def _spring(value):
    _Sprung.count += 1
    return value


class Trap:
    """Unpickling it calls ``_spring``."""

    def __reduce__(self):
        return _spring, ("sprung",)


def test_recv_bytes_gives_an_out_of_band_pickle_in_band_without_unpickling_it():
    arr = np.arange(100_000)
    with pipe(plait.ipc) as (a, b):
        a.send({"trap": Trap(), "arr": arr, "ro": pickle.PickleBuffer(b"read-only")})
        _Sprung.count = 0
        data = b.recv_bytes()
        assert _Sprung.count == 0  # bytes out, nothing run
        got = pickle.loads(data)
        assert _Sprung.count == 1 and got["trap"] == "sprung"
        assert np.array_equal(got["arr"], arr)
        assert bytes(got["ro"]) == b"read-only" and memoryview(got["ro"]).readonly
        a.send(arr)
        with pytest.raises(OSError, match="bad message length"):
            b.recv_bytes(1000)  # measured in-band, as the standard library would see it


def test_recv_bytes_of_a_message_carrying_a_connection_names_the_cause():
    with pipe(plait.ipc) as (a, b), pipe(plait.ipc) as (x, y):
        a.send(x)
        with pytest.raises(OSError, match="only recv"):
            b.recv_bytes()
        a.send("next")
        assert b.recv() == "next"


def test_sending_an_unpicklable_object_raises_type_error_and_sends_nothing(api):
    with pipe(api) as (a, b):
        with pytest.raises(TypeError, match="_thread.lock"):
            a.send({"lock": threading.Lock()})
        a.send("next")
        assert b.recv() == "next"


def test_closed_connection_raises_oserror(api):
    a, b = api.Pipe()
    a.close()
    a.close()  # idempotent
    assert a.closed and not b.closed
    for call in (lambda: a.send(1), a.recv, a.poll, a.fileno, lambda: a.send_bytes(b"")):
        with pytest.raises(OSError):
            call()
    b.close()


def test_one_way_pipe_has_a_reading_and_a_writing_end(api):
    reader, writer = api.Pipe(duplex=False)
    assert reader.readable and not reader.writable
    assert writer.writable and not writer.readable
    writer.send("one way")
    assert reader.recv() == "one way"
    with pytest.raises(OSError):
        reader.send(1)
    with pytest.raises(OSError):
        writer.recv()
    with pytest.raises(OSError):
        writer.poll()
    reader.close()
    writer.close()


def test_poll_waits_for_a_message(api):
    with pipe(api) as (a, b):
        assert b.poll() is False
        assert b.poll(0.01) is False
        timer = threading.Timer(0.05, a.send, ("late",))
        timer.start()
        assert b.poll(10) is True
        assert b.recv() == "late"
        timer.join()
        a.close()
        assert b.poll(None) is True  # end of file


def test_unpicklable_object_raises_and_the_connection_stays_usable(api):
    with pipe(api) as (a, b):
        with pytest.raises((TypeError, pickle.PicklingError)):
            a.send(threading.Lock())
        assert not b.poll()
        a.send("next")
        assert b.recv() == "next"


def test_context_manager_closes(api):
    a, b = api.Pipe()
    with a, b:
        assert not a.closed
    assert a.closed and b.closed


# -- plait only -----------------------------------------------------------------------


def test_oversized_message_is_refused_before_anything_is_written():
    with pipe(plait.ipc, max_message_size=1000) as (a, b):
        with pytest.raises(plait.ipc.MessageTooLarge, match="1000") as info:
            a.send(b"x" * 2000)
        assert isinstance(info.value, ValueError)
        assert info.value.limit == 1000 and info.value.size > 1000
        with pytest.raises(plait.ipc.MessageTooLarge):
            a.send(np.zeros(200))  # out-of-band buffers count too
        with pytest.raises(plait.ipc.MessageTooLarge):
            a.send_bytes(b"y" * 1001)
        assert not b.poll()
        a.send("small")
        assert b.recv() == "small"


@pytest.mark.parametrize("kind", [socket.SOCK_SEQPACKET, socket.SOCK_STREAM])
def test_receiver_rejects_an_enormous_announced_length(kind):
    raw, theirs = socket.socketpair(socket.AF_UNIX, kind)
    conn = plait.ipc.Connection(theirs.detach(), max_message_size=1 << 20)
    with raw:
        raw.sendall(framing.HEADER.pack(framing.PLAIN, 0, 0, 0, 1 << 62))
        with pytest.raises(plait.ipc.MessageTooLarge, match=str(1 << 20)):
            conn.recv()
        assert conn.closed  # the rest of that frame would still be in the socket


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00" * 16,
        b"\x07" + b"\x00" * 15,
        framing.HEADER.pack(framing.PLAIN, 0, 0, 3, 10),  # a plain frame with buffers
        framing.HEADER.pack(framing.SEGMENT, 0, 0, 0, 10),  # a segment without its fd
        b"short",
    ],
)
def test_garbage_frames_raise_frame_error(garbage):
    raw, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    conn = plait.ipc.Connection(theirs.detach())
    with raw:
        raw.send(garbage)
        with pytest.raises(framing.FrameError):
            conn.recv()
    assert isinstance(framing.FrameError("x"), OSError)
    assert conn.closed


def rights(*fds: int):
    return [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]


def test_fds_smuggled_beside_a_frame_are_dropped():
    raw, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    conn = plait.ipc.Connection(theirs.detach())
    r, w = os.pipe()
    with raw, conn:
        payload = pickle.dumps("ok")
        header = framing.HEADER.pack(framing.PLAIN, 0, 0, 0, len(payload))
        raw.sendmsg([header, payload], rights(r, w))
        os.close(r)
        os.close(w)
        assert conn.recv() == "ok"
    # no_leaks checks that no fd of the two reached this process and stayed open


def test_announced_fds_that_do_not_match_the_frame_are_closed():
    raw, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    conn = plait.ipc.Connection(theirs.detach())
    r, w = os.pipe()
    with raw:
        raw.send(framing.HEADER.pack(framing.FDS_NEXT, 0, 0, 0, 0))
        header = framing.HEADER.pack(framing.PLAIN, 1, 0, 0, 1) + b"N"  # says 1, sends 2
        raw.sendmsg([header], rights(r, w))
        os.close(r)
        os.close(w)
        with pytest.raises(framing.FrameError, match="fds"):
            conn.recv()
    assert conn.closed


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "threshold", [framing.SEGMENT_THRESHOLD, 1 << 16], ids=["inline", "segment"]
)
def test_large_arrays_cross_to_a_child_intact(monkeypatch, threshold):
    monkeypatch.setattr(framing, "SEGMENT_THRESHOLD", threshold)
    arrays = [np.random.default_rng(i).random(n) for i, n in enumerate((10, 1 << 17, 1 << 20))]
    here, there = plait.ipc.Pipe()
    with child(sum_arrays, there):
        there.close()
        for arr in arrays:
            here.send(arr)
            assert here.recv() == (float(arr.sum()), True)
        here.send(None)
    here.close()


def test_received_arrays_are_equal_and_writable_in_both_transports(monkeypatch):
    for threshold in (framing.SEGMENT_THRESHOLD, 1 << 12):
        monkeypatch.setattr(framing, "SEGMENT_THRESHOLD", threshold)
        with pipe(plait.ipc) as (a, b):
            arr = np.arange(100_000, dtype=np.int32).reshape(100, 1000)
            a.send({"a": arr, "b": arr[::2]})  # a non-contiguous view goes in-band
            got = b.recv()
            assert (got["a"] == arr).all() and (got["b"] == arr[::2]).all()
            got["a"][0, 0] = -1  # writable, and a private copy
            assert arr[0, 0] == 0
            a.send_bytes(b"z" * 10_000)
            assert b.recv_bytes() == b"z" * 10_000


@pytest.mark.timeout(30)
def test_a_connection_travels_through_a_pipe_to_a_child():
    here, there = plait.ipc.Pipe()
    mine, theirs = plait.ipc.Pipe()
    with child(use_passed_connection, there):
        there.close()
        here.send(theirs)
        theirs.close()  # the child holds its own fd now
        mine.send("ping")
        assert mine.recv() == ("through the passed connection", "ping")
    here.close()
    mine.close()


def test_a_connection_cannot_be_pickled_outside_a_message():
    a, b = plait.ipc.Pipe()
    with a, b:
        with pytest.raises(pickle.PicklingError, match="file descriptor"):
            pickle.dumps(a)


def test_recv_timeout_raises_timeout_error():
    with pipe(plait.ipc) as (a, b):
        with pytest.raises(TimeoutError):
            b.recv(timeout=0.01)
        with pytest.raises(TimeoutError):
            b.recv_bytes(timeout=0)
        a.send(5)
        assert b.recv(timeout=10) == 5


def test_constructor_rejects_bad_handles():
    with pytest.raises(TypeError):
        plait.ipc.Connection("3")
    with pytest.raises(ValueError):
        plait.ipc.Connection(-1)
    a, b = socket.socketpair()
    with a, b:
        with pytest.raises(ValueError):
            plait.ipc.Connection(a.fileno(), readable=False, writable=False)


def test_many_small_messages_keep_their_boundaries():
    with pipe(plait.ipc) as (a, b):
        sizes = [0, 1, 15, 16, 17, framing.RECORD_SIZE - 17, framing.RECORD_SIZE, 200_000]
        for n in sizes:
            a.send_bytes(bytes([n % 251]) * n)
        for n in sizes:
            assert b.recv_bytes() == bytes([n % 251]) * n


def test_header_layout_is_sixteen_bytes():
    assert framing.HEADER.size == 16
    assert struct.unpack("<BBHIQ", framing.HEADER.pack(1, 2, 0, 3, 4)) == (1, 2, 0, 3, 4)


def test_unix_stream_sockets_carry_connections_and_buffers():
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a = plait.ipc.Connection(left.detach())
    b = plait.ipc.Connection(right.detach())
    with a, b, pipe(plait.ipc) as (x, y):
        arr = np.arange(300_000)
        a.send(("one", x, arr))
        label, x2, arr2 = b.recv()
        assert label == "one" and (arr2 == arr).all()
        with x2:
            x2.send("through the copy")
            assert y.recv() == "through the copy"


@pytest.mark.timeout(30)
def test_a_tcp_connection_refuses_to_carry_a_connection():
    with plait.ipc.Listener(("127.0.0.1", 0)) as listener:
        client = plait.ipc.Client(listener.address)
        with client, listener.accept() as server, pipe(plait.ipc) as (x, _):
            with pytest.raises(pickle.PicklingError):
                client.send(x)
            big = np.random.default_rng(3).random(1 << 19)
            sender = threading.Thread(target=client.send, args=(big,))
            sender.start()  # stream framing: header, table, then the body scattered
            assert (server.recv() == big).all()
            sender.join()


def test_more_buffers_than_a_frame_holds_go_in_band():
    with pipe(plait.ipc) as (a, b):
        arrays = [np.full(10, i) for i in range(framing.MAX_BUFFERS + 5)]
        a.send(arrays)
        got = b.recv()
        assert len(got) == len(arrays) and all(
            (x == y).all() for x, y in zip(got, arrays, strict=True)
        )


def test_a_segment_and_a_connection_in_one_message(monkeypatch):
    monkeypatch.setattr(framing, "SEGMENT_THRESHOLD", 1 << 12)
    with pipe(plait.ipc) as (a, b), pipe(plait.ipc) as (x, y):
        arr = np.arange(50_000)
        a.send({"conn": x, "arr": arr})
        got = b.recv()
        with got["conn"] as x2:
            assert (got["arr"] == arr).all()
            x2.send_bytes(b"segment and fd")
            assert y.recv_bytes() == b"segment and fd"


@pytest.mark.parametrize("kind", [socket.SOCK_SEQPACKET, socket.SOCK_STREAM])
def test_peer_closing_in_the_middle_of_a_frame_raises_eof(kind):
    raw, theirs = socket.socketpair(socket.AF_UNIX, kind)
    conn = plait.ipc.Connection(theirs.detach())
    with conn:
        with raw:
            raw.send(framing.HEADER.pack(framing.PLAIN, 0, 0, 0, 200_000) + b"x" * 1000)
        with pytest.raises(EOFError, match="middle"):
            conn.recv_bytes()


def test_an_unsealed_memfd_is_not_accepted_as_a_segment():
    raw, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    conn = plait.ipc.Connection(theirs.detach())
    fd = os.memfd_create("unsealed")
    os.write(fd, b"x" * 100)
    with raw:
        raw.send(framing.HEADER.pack(framing.FDS_NEXT, 0, 0, 0, 0))
        raw.sendmsg([framing.HEADER.pack(framing.SEGMENT, 1, 0, 0, 100)], rights(fd))
        os.close(fd)
        with pytest.raises(framing.FrameError, match="sealed"):
            conn.recv()
    assert conn.closed


CHILD_REBUILDS_CONNECTION = """
import pickle, sys
from plait._core import fdpass
fds = [int(x) for x in sys.argv[1:]]
with fdpass.FdSupply(fds):
    conn = pickle.loads(sys.stdin.buffer.read())
conn.send(("rebuilt in a spawned child", conn.recv()))
conn.close()
"""


@pytest.mark.timeout(60)
def test_the_spawn_hook_passes_a_connection_to_a_fresh_interpreter():
    """What a spawn start method does: pickle under a collector, let the child inherit
    the collected fds, rebuild under a supply."""
    here, there = plait.ipc.Pipe()
    with here:
        with fdpass.FdCollector() as collector:
            data = pickle.dumps(there)
        there.close()
        with python_with_fds(CHILD_REBUILDS_CONNECTION, data, collector) as child:
            here.send("ping")
            assert here.recv(timeout=30) == ("rebuilt in a spawned child", "ping")
            assert child.wait(30) == 0


def test_timeouts_too_long_for_poll_mean_forever():
    with pipe(plait.ipc) as (a, b):
        a.send(1)
        assert b.poll(1e12) and b.poll(float("inf"))
        assert plait.ipc.wait([b], float("inf")) == [b]


@pytest.mark.timeout(120)
@settings(max_examples=60, deadline=None)
@given(
    records=st.lists(
        st.one_of(
            st.binary(max_size=64),
            st.builds(
                lambda kind, nfds, count, size, tail: (
                    framing.HEADER.pack(kind, nfds, 0, count, size) + tail
                ),
                st.integers(0, 5),
                st.integers(0, 2),
                st.integers(0, 3),
                st.integers(0, 1 << 21),
                st.binary(max_size=64),
            ),
        ),
        max_size=4,
    ),
    kind=st.sampled_from([socket.SOCK_SEQPACKET, socket.SOCK_STREAM]),
)
def test_garbage_records_raise_clean_errors_and_never_hang(records, kind):
    raw, theirs = socket.socketpair(socket.AF_UNIX, kind)
    conn = plait.ipc.Connection(theirs.detach(), max_message_size=1 << 20)
    with conn:
        with raw:
            for record in records:
                if record:
                    raw.send(record)
        for _ in range(len(records) + 1):
            try:
                conn.recv_bytes()
            except (EOFError, framing.FrameError, plait.ipc.MessageTooLarge):
                break
            except OSError as exc:
                assert conn.closed or "handle is closed" in str(exc)
                break
