"""Shared ctypes values and arrays, SharedMemory and ShareableList across processes."""

from __future__ import annotations

import ctypes
import multiprocessing.shared_memory
import os
import pickle
import signal
import sys
import time

import pytest

import plait.ipc.shared_memory as plait_shm
import plait.ipc.sharedctypes as plait_sct
from plait.ipc import Pipe
from plait.ipc.synchronize import Lock, OwnerDiedError
from tests.ipc.conftest import PLAIT
from tests.support import finish, run_python, start

pytestmark = pytest.mark.timeout(60)


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_double)]


def _bump(value, array, times):
    for _ in range(times):
        with value.get_lock():
            value.value += 1
        with array:
            array[0] += 1


def test_value_and_array_match(api, no_shm_leaks):
    sct = api.sharedctypes
    value = sct.Value("i", 0)
    array = sct.Array("d", [0.0, 1.5, 2.5])
    children = [start(api.Process, _bump, value, array, 500) for _ in range(3)]
    _bump(value, array, 500)
    assert [finish(p) for p in children] == [0] * 3
    assert value.value == 2000
    assert array[:] == [2000.0, 1.5, 2.5]
    assert array[1:] == [1.5, 2.5]
    assert len(array) == 3
    array[1:3] = [7.0, 8.0]
    assert list(array.get_obj()) == [2000.0, 7.0, 8.0]
    text = sct.Array("c", b"hello")
    assert text.value == b"hello"
    text.value = b"hi"
    assert text.raw[:3] == b"hi\x00"
    raw = sct.RawValue(ctypes.c_double, 2.5)
    assert raw.value == 2.5 and isinstance(raw, ctypes.c_double)
    assert sct.RawArray("i", 4)[:] == [0, 0, 0, 0]
    assert sct.Value("i", 1, lock=False).value == 1
    point = sct.Value(Point, 3, 4.5)
    assert (point.get_obj().x, point.get_obj().y) == (3, 4.5)
    lock = api.Lock()
    assert sct.Value("q", 9, lock=lock).get_lock() is lock


def test_shared_ctypes_travel_through_a_pipe(no_shm_leaks):
    value = plait_sct.Value("i", 5)
    array = plait_sct.RawArray("q", range(4))
    a, b = Pipe()
    with a, b:
        a.send((value, array))
        value2, array2 = b.recv(timeout=5)
    value2.value = 42
    array2[3] = -1
    assert value.value == 42
    assert array[:] == [0, 1, 2, -1]
    assert isinstance(value2.get_lock(), type(value.get_lock()))


def test_shared_ctypes_bad_input():
    with pytest.raises(TypeError, match="typecode 'z'"):
        plait_sct.Value("z")
    with pytest.raises(TypeError, match="ctypes type"):
        plait_sct.RawValue(object)
    with pytest.raises(ValueError, match=">= 0"):
        plait_sct.RawArray("i", -1)
    with pytest.raises(AttributeError, match="acquire"):
        plait_sct.Value("i", lock="yes")


# -- SharedMemory ------------------------------------------------------------------------


@pytest.fixture(params=[multiprocessing.shared_memory, plait_shm], ids=["multiprocessing", "plait"])
def shm(request):
    """``multiprocessing.shared_memory`` or plait's: the same scenario on both."""
    return request.param


def _write_hello(name):
    block = type_of_block(name)(name)
    block.buf[:5] = b"hello"
    block.close()


def type_of_block(name):
    return plait_shm.SharedMemory if "@" in name else multiprocessing.shared_memory.SharedMemory


def test_shared_memory_matches(shm, no_shm_leaks):
    block = shm.SharedMemory(create=True, size=100)
    try:
        assert block.size >= 100 and len(block.buf) >= 100
        child = start(PLAIT.Process, _write_hello, block.name)
        assert finish(child) == 0
        assert bytes(block.buf[:5]) == b"hello"
        other = shm.SharedMemory(block.name)
        other.buf[5] = 33
        assert block.buf[5] == 33
        other.close()
    finally:
        block.close()
        block.unlink()
    with pytest.raises(FileNotFoundError):
        shm.SharedMemory(block.name)
    with pytest.raises(ValueError):
        shm.SharedMemory(create=True, size=-1)
    with pytest.raises(ValueError):
        shm.SharedMemory(create=True, size=0)
    with pytest.raises(ValueError):
        shm.SharedMemory()
    with pytest.raises(FileNotFoundError):
        shm.SharedMemory("plait_test_no_such_block")


def test_named_block_exists_once(no_shm_leaks):
    block = plait_shm.SharedMemory("plait-test-named", create=True, size=10)
    with pytest.raises(FileExistsError):
        plait_shm.SharedMemory("plait-test-named", create=True, size=10)
    other = plait_shm.SharedMemory("plait-test-named")
    assert other.size == 10
    other.close()
    block.close()
    with pytest.raises(FileNotFoundError):  # nobody holds it: it is gone
        plait_shm.SharedMemory("plait-test-named")


def _module(which):
    return plait_shm if which == "plait" else multiprocessing.shared_memory


def _race_to_create(which, name, gate, conn, me):
    gate.wait(10)
    try:
        block = _module(which).SharedMemory(name, create=True, size=16)
    except FileExistsError:
        conn.send("exists")
        return
    block.buf[0] = me
    conn.send("created")
    conn.recv(timeout=30)  # every racer has answered: only now may the name go
    block.close()
    block.unlink()


def test_racing_creators_of_one_name_one_wins(shm, no_shm_leaks):
    # O_CREAT | O_EXCL is atomic: of several processes creating one name at once,
    # exactly one gets the block and every other one FileExistsError.
    which = shm.__name__.partition(".")[0]
    for round_ in range(4):
        name = f"plait_test_race_{os.getpid()}_{round_}"
        gate = PLAIT.Barrier(5)
        pipes = [Pipe() for _ in range(4)]
        racers = [
            start(PLAIT.Process, _race_to_create, which, name, gate, b, i)
            for i, (_, b) in enumerate(pipes)
        ]
        try:
            gate.wait(10)
            answers = [a.recv(timeout=30) for a, _ in pipes]
        finally:
            for a, b in pipes:
                a.send("done")
                a.close()
                b.close()
            exits = [finish(p) for p in racers]
        assert sorted(answers) == ["created"] + ["exists"] * 3, f"round {round_}"
        assert exits == [0] * 4


def _attach_and_hold(which, name, conn):
    block = _module(which).SharedMemory(name)
    conn.send("attached")
    conn.recv(timeout=30)
    block.close()


def test_a_name_outlives_its_creator_until_unlinked(shm, no_shm_leaks):
    # The standard name exists until unlink(): while someone holds the block, creating
    # the name again fails also after the creator closed; once unlinked, it is free.
    name = f"plait_test_outlives_{os.getpid()}"
    block = shm.SharedMemory(name, create=True, size=64)
    a, b = Pipe()
    with a, b:
        holder = start(PLAIT.Process, _attach_and_hold, shm.__name__.partition(".")[0], name, b)
        assert a.recv(timeout=10) == "attached"
        block.close()
        with pytest.raises(FileExistsError):
            shm.SharedMemory(name, create=True, size=64)
        block.unlink()
        again = shm.SharedMemory(name, create=True, size=64)
        a.send("done")
        assert finish(holder) == 0
    again.close()
    again.unlink()


ATTACH_IN_ANOTHER_PROGRAM = """
import sys
from {module} import SharedMemory
block = SharedMemory(sys.argv[1], track={track})
block.buf[0] = 7
block.close()
"""


def _has_track(shm) -> bool:
    import inspect

    return "track" in inspect.signature(shm.SharedMemory).parameters


def test_a_program_that_attaches_untracked_leaves_the_block_alive(shm, no_shm_leaks):
    # Python 3.13's track=False: a separate program (not a child of this one) attaches,
    # writes and exits; the block stays usable by name, and nothing warns of a leak.
    if not _has_track(shm):
        pytest.skip(f"{shm.__name__}.SharedMemory has no track= before Python 3.13")
    block = shm.SharedMemory(create=True, size=10, track=False)
    try:
        code = ATTACH_IN_ANOTHER_PROGRAM.format(module=shm.__name__, track=False)
        done = run_python("-c", code, block.name, timeout=60)
        assert (done.returncode, done.stderr) == (0, "")
        assert block.buf[0] == 7
        again = shm.SharedMemory(block.name, track=False)
        assert again.buf[0] == 7
        again.close()
    finally:
        block.close()
        block.unlink()


def test_track_is_keyword_only_and_a_tracked_block_outlives_a_program_that_attached(
    no_shm_leaks,
):
    # The standard library's tracker would unlink the block when the attaching program
    # exits (its CPython test_shared_memory_tracking); a plait block needs no tracker: the
    # kernel keeps it while this process holds it, as the standard library on Windows.
    with pytest.raises(TypeError):
        plait_shm.SharedMemory(None, True, 10, True)
    block = plait_shm.SharedMemory(create=True, size=10)
    try:
        code = ATTACH_IN_ANOTHER_PROGRAM.format(module=plait_shm.__name__, track=True)
        done = run_python("-c", code, block.name, timeout=60)
        assert (done.returncode, done.stderr) == (0, "")
        again = plait_shm.SharedMemory(block.name)
        assert again.buf[0] == 7
        again.close()
    finally:
        block.close()
        block.unlink()


def test_fresh_names_have_one_length(shm, no_shm_leaks):
    # CPython 3.12's test_shared_memory_ShareableList_pickling: the pickles of two
    # lists are as long as each other, though their blocks' fds have different widths.
    first = shm.ShareableList(range(10))
    dummies = [os.open(os.devnull, os.O_RDONLY)]
    while len(str(dummies[-1] + 1)) == len(str(dummies[-1])):
        dummies.append(os.open(os.devnull, os.O_RDONLY))
    second = shm.ShareableList(range(400))  # its block's fd has one more digit
    try:
        assert len(first.shm.name) == len(second.shm.name)
        for proto in range(pickle.HIGHEST_PROTOCOL + 1):
            assert len(pickle.dumps(first, proto)) == len(pickle.dumps(second, proto))
        again = pickle.loads(pickle.dumps(second))
        assert again[399] == 399
        again.shm.close()
    finally:
        for fd in dummies:
            os.close(fd)
        for sl in (first, second):
            sl.shm.close()
            sl.shm.unlink()


def _list_proc_while_making_blocks(conn):
    listed = []

    def hook(event, args):
        if event in ("os.listdir", "os.scandir") and str(args[0]).startswith("/proc"):
            listed.append(str(args[0]))

    sys.addaudithook(hook)
    blocks = [plait_shm.SharedMemory(create=True, size=10) for _ in range(3)]
    other = plait_shm.SharedMemory(blocks[0].name)
    other.close()
    for block in blocks:
        block.close()
    conn.send(listed)


def test_fresh_names_and_their_attaches_list_no_directory(no_shm_leaks):
    # A made name is unique (random, then where its fd is): creating N blocks must not
    # list /proc each time (that made it O(N^2)), nor must attaching by such a name.
    a, b = Pipe()
    with a, b:
        child = start(PLAIT.Process, _list_proc_while_making_blocks, b)
        listed = a.recv(timeout=20)
        assert finish(child) == 0
    assert listed == []


def _hold_block(name, conn):
    block = plait_shm.SharedMemory(name)
    conn.send("attached")
    time.sleep(60)
    block.close()


def test_block_lives_while_a_user_lives_and_dies_with_the_last(no_shm_leaks):
    # The standard library's resource tracker unlinks a block when its creator exits,
    # under other users' feet, and nothing frees it after kill -9 of every user.
    block = plait_shm.SharedMemory(create=True, size=4096)
    block.buf[:3] = b"abc"
    name = block.name
    a, b = Pipe()
    holder = start(PLAIT.Process, _hold_block, name, b)
    assert a.recv(timeout=10) == "attached"
    block.close()  # the creator lets go; the holder still has it
    again = plait_shm.SharedMemory(name)
    assert bytes(again.buf[:3]) == b"abc"
    again.close()
    os.kill(holder.pid, signal.SIGKILL)
    assert finish(holder) == -signal.SIGKILL
    with pytest.raises(FileNotFoundError):
        plait_shm.SharedMemory(name)
    a.close()
    b.close()


def test_shareable_list_matches(shm, no_shm_leaks):
    items = [1, 2.5, True, "héllo", b"xy", None]
    sl = shm.ShareableList(items)
    try:
        assert list(sl) == items and len(sl) == 6
        assert sl.format == "qdxxxxxxx?8s8sxxxxxx?x"  # the standard library's layout
        assert sl._get_packing_format(3) == "8s"
        other = shm.ShareableList(name=sl.shm.name)
        other[0] = -5
        other[3] = "hi"
        other[5] = "now"  # a str where None was: the slot's 8 bytes
        assert sl[0] == -5 and sl[3] == "hi" and sl[5] == "now" and sl[-2] == b"xy"
        assert sl.format == "qdxxxxxxx?8s8s8s"
        assert sl.count(True) == 1 and sl.index("now") == 5
        with pytest.raises(ValueError, match="exceeds available storage"):
            sl[3] = "x" * 9
        with pytest.raises(IndexError):
            sl[6]
        assert f"name={sl.shm.name!r}" in repr(sl)
        other.shm.close()
        empty = shm.ShareableList()
        assert len(empty) == 0 and empty.format == "" and empty.count(1) == 0
        empty.shm.close()
        empty.shm.unlink()
    finally:
        sl.shm.close()
        sl.shm.unlink()


def test_shareable_list_travels_and_refuses_other_types(no_shm_leaks):
    sl = plait_shm.ShareableList([1, "two", None])
    with pytest.raises(TypeError, match="list"):
        plait_shm.ShareableList([[1]])
    a, b = Pipe()
    with a, b:
        a.send(sl)
        assert list(b.recv(timeout=5)) == [1, "two", None]
    sl.shm.close()


def test_value_lock_holder_killed(no_shm_leaks):
    value = plait_sct.Value("i", 0, lock=Lock())
    child = start(PLAIT.Process, _hold_and_die, value)
    finish(child)
    with pytest.raises(OwnerDiedError):
        value.get_lock().acquire(timeout=10)
    with value:
        value.get_obj().value += 1
    assert value.value == 1


def _hold_and_die(value):
    value.get_lock().acquire()
    os.kill(os.getpid(), signal.SIGKILL)
