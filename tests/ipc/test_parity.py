"""Where CPython's own suite found plait's queues, primitives and shared objects behaving
differently: each scenario runs on the standard library and on plait alike."""

from __future__ import annotations

import concurrent.futures
import ctypes
import gc
import multiprocessing.connection
import multiprocessing.heap
import multiprocessing.queues
import multiprocessing.shared_memory
import multiprocessing.sharedctypes
import os
import re
import sys
import types
from unittest import mock

import pytest

import plait.ipc.heap
import plait.ipc.queues
import plait.ipc.shared_memory
import plait.ipc.sharedctypes
import plait.process
from tests.ipc.conftest import PLAIT, STANDARD
from tests.support import finish, start

pytestmark = pytest.mark.timeout(60)

_STD = multiprocessing.get_context("fork")
MODULES = {
    "multiprocessing": types.SimpleNamespace(
        api=STANDARD,
        queues=multiprocessing.queues,
        heap=multiprocessing.heap,
        sharedctypes=multiprocessing.sharedctypes,
        shared_memory=multiprocessing.shared_memory,
    ),
    "plait": types.SimpleNamespace(
        api=PLAIT,
        queues=plait.ipc.queues,
        heap=plait.ipc.heap,
        sharedctypes=plait.ipc.sharedctypes,
        shared_memory=plait.ipc.shared_memory,
    ),
}


@pytest.fixture(params=list(MODULES))
def mods(request):
    """The standard modules or plait's, for the same scenario."""
    return MODULES[request.param]


# -- queues ---------------------------------------------------------------------------


def test_closing_a_simple_queue_closes_both_ends(mods):
    q = mods.api.SimpleQueue()
    assert not q._reader.closed and not q._writer.closed
    q.close()
    q.close()  # twice is fine
    assert q._reader.closed and q._writer.closed


class _Unpicklable:
    def __reduce__(self):
        raise AttributeError("not today")


def test_the_feeder_error_hook_gets_an_item_that_cannot_be_pickled(mods):
    seen = []

    class SafeQueue(mods.queues.Queue):
        @staticmethod
        def _on_queue_feeder_error(e, obj):
            seen.append((type(e), type(obj)))

    q = SafeQueue(ctx=_STD)
    q.put(_Unpicklable())
    q.put(True)
    assert q.get(timeout=10) is True
    assert seen == [(AttributeError, _Unpicklable)]
    q.close()
    q.join_thread()


def test_without_the_hook_plait_refuses_the_item_at_put():
    """A deliberate difference: the standard library prints the error in its feeder
    thread and drops the item, so a consumer waiting for it would wait forever."""
    q = plait.ipc.queues.Queue()
    with pytest.raises(Exception, match="not today"):
        q.put(_Unpicklable())
    assert q.empty()
    q.close()


def test_a_queue_end_names_what_it_cannot_do():
    q = plait.ipc.queues.SimpleQueue()
    with pytest.raises(AttributeError, match="no pipe"):
        q._writer.fileno()
    with pytest.raises(AttributeError, match="no pipe"):
        q._reader.recv_bytes()
    q.close()


def _put_later(q, items):
    for item in items:
        q.put(item)


def test_the_reader_end_is_waited_on_beside_sentinels(mods, no_shm_leaks):
    q = mods.api.SimpleQueue()
    reader = q._reader
    assert reader is q._reader
    assert multiprocessing.connection.wait([reader], timeout=0.05) == []
    assert not reader.poll()
    child = start(mods.api.Process, _put_later, q, ["a", ("b", 2)])
    ready = multiprocessing.connection.wait([reader, child.sentinel], timeout=10)
    assert reader in ready
    assert reader.recv() == "a"
    assert finish(child) == 0
    assert reader.poll(5) and reader.recv() == ("b", 2)
    assert multiprocessing.connection.wait([reader], timeout=0.05) == []
    q.close()


@pytest.mark.parametrize(
    "ctx", [_STD, plait.process.get_context("fork")], ids=["multiprocessing", "plait"]
)
def test_the_standard_process_pool_runs_on_the_context(ctx, no_shm_leaks):
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:
        assert list(pool.map(abs, range(-20, 0))) == list(range(20, 0, -1))
        assert pool.submit(pow, 2, 10).result(timeout=30) == 1024


# -- primitives -----------------------------------------------------------------------


def test_reprs_match(mods):
    api = mods.api
    lock, rlock = api.Lock(), api.RLock()
    assert repr(lock) == "<Lock(owner=None)>"
    lock.acquire()
    assert repr(lock) == "<Lock(owner=MainProcess)>"
    assert repr(rlock) == "<RLock(None, 0)>"
    rlock.acquire()
    rlock.acquire()
    assert repr(rlock) == "<RLock(MainProcess, 2)>"
    assert repr(api.Semaphore(3)) == "<Semaphore(value=3)>"
    assert repr(api.BoundedSemaphore(2)) == "<BoundedSemaphore(value=2, maxvalue=2)>"
    assert repr(api.Condition(api.Lock())) == "<Condition(<Lock(owner=None)>, 0)>"
    if api is STANDARD and sys.version_info < (3, 11):
        return  # the standard Event and Barrier have these reprs from 3.11 on
    event = api.Event()
    assert re.fullmatch(r"<Event at 0x[0-9a-f]+ unset>", repr(event))
    event.set()
    assert re.fullmatch(r"<Event at 0x[0-9a-f]+ set>", repr(event))
    assert re.fullmatch(r"<\S+\.Barrier at 0x[0-9a-f]+: waiters=0/2>", repr(api.Barrier(2)))


def test_the_standard_conditions_counters_are_refused_by_name():
    cond = PLAIT.Condition()
    with pytest.raises(NotImplementedError, match="repr"):
        cond._sleeping_count.get_value()


# -- shared ctypes --------------------------------------------------------------------


class Foo(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_double), ("z", ctypes.c_longlong)]


def _double_foo(foo):
    foo.x *= 2
    foo.y *= 2


@pytest.mark.parametrize("lock", [False, True])
def test_a_shared_structure_is_doubled_by_a_child(mods, lock, no_shm_leaks):
    foo = mods.sharedctypes.Value(Foo, 3, 2, lock=lock)
    assert finish(start(mods.api.Process, _double_foo, foo)) == 0
    assert (foo.x, foo.y) == (6, 4.0)
    if lock:
        assert type(foo).__name__ == "SynchronizedFoo"
        assert foo.get_obj().x == 6


def test_copy_of_a_structure_is_its_own(mods):
    foo = Foo(2, 5.0, 2**33)
    bar = mods.sharedctypes.copy(foo)
    foo.x, foo.y, foo.z = 0, 0, 0
    assert (bar.x, bar.y, bar.z) == (2, 5.0, 2**33)


# -- the heap -------------------------------------------------------------------------


def _write_into(wrapper):
    wrapper.create_memoryview()[:5] = b"child"


@pytest.fixture
def fresh_heap(mods):
    """A heap of the test's own, which unmaps an arena once it is all free."""
    heap = mods.heap.Heap()
    heap._DISCARD_FREE_SPACE_LARGER_THAN = 0
    with mock.patch.object(mods.heap.BufferWrapper, "_heap", heap):
        yield heap


def test_a_heap_buffer_is_shared_with_a_child(mods, fresh_heap, no_shm_leaks):
    wrapper = mods.heap.BufferWrapper(16)
    view = wrapper.create_memoryview()
    assert len(view) == 16
    assert finish(start(mods.api.Process, _write_into, wrapper)) == 0
    assert bytes(view[:5]) == b"child"
    view.release()
    del view, wrapper
    gc.collect()
    assert fresh_heap._arenas == []


def test_the_heap_covers_its_arenas_and_gives_them_back(mods):
    heap = mods.heap.Heap()
    heap._DISCARD_FREE_SPACE_LARGER_THAN = 0
    blocks = [heap.malloc(size) for size in (1, 100, 5000, 3, 70000, 8, 200)]
    for block in blocks[::2]:
        heap.free(block)
    free = sum(stop - start for seq in heap._len_to_seq.values() for _, start, stop in seq)
    used = sum(stop - start for spans in heap._allocated_blocks.values() for start, stop in spans)
    assert free + used == sum(arena.size for arena in heap._arenas)
    for block in blocks[1::2]:
        heap.free(block)
    assert heap._n_frees == heap._n_mallocs == len(blocks)
    assert heap._arenas == [] and heap._len_to_seq == {} and not heap._allocated_blocks


def test_buffers_freed_by_the_garbage_collector_do_not_deadlock(mods, fresh_heap):
    thresholds = gc.get_threshold()
    gc.set_threshold(10)
    try:
        for _ in range(2000):
            a = mods.heap.BufferWrapper(1)
            b = mods.heap.BufferWrapper(1)
            a.buddy, b.buddy = b, a
    finally:
        gc.set_threshold(*thresholds)
    del a, b
    gc.collect()
    fresh_heap.free(fresh_heap.malloc(1))  # frees what the collector left pending
    assert fresh_heap._pending_free_blocks == []
    assert fresh_heap._arenas == [] and not fresh_heap._allocated_blocks


# -- shared memory --------------------------------------------------------------------


def test_a_fresh_name_is_drawn_again_when_taken(mods):
    shm = mods.shared_memory
    names = [f"/psm_t1{os.getpid()}", f"/psm_t2{os.getpid()}"]
    with mock.patch.object(shm, "_make_filename", side_effect=names):
        first = shm.SharedMemory(create=True, size=1)
    with mock.patch.object(shm, "_make_filename", side_effect=names):
        second = shm.SharedMemory(create=True, size=1)
    try:
        assert (first._name, second._name) == tuple(names)
        assert first.name.startswith(names[0][1:])
    finally:
        for block in (first, second):
            block.close()
            block.unlink()


def test_a_name_is_unlinked_once(mods):
    shm = mods.shared_memory
    name = f"plait_test_unlink_{os.getpid()}"
    one = shm.SharedMemory(name, create=True, size=5000)
    two = shm.SharedMemory(name)
    two.unlink()
    two.close()
    one.close()
    with pytest.raises(FileNotFoundError):
        one.unlink()


def test_a_subclass_with_o_creat_attaches_or_creates(mods):
    shm = mods.shared_memory

    class AttachOrCreate(shm.SharedMemory):
        _flags = os.O_CREAT | os.O_RDWR

    name = f"plait_test_creat_{os.getpid()}"
    block = shm.SharedMemory(name, create=True, size=512)
    try:
        same = AttachOrCreate(name)
        assert same.size == block.size
        same.close()
        with pytest.raises(FileExistsError):
            shm.SharedMemory(name, create=True, size=512)
    finally:
        block.close()
        block.unlink()


def test_a_standard_lock_is_refused_naming_both_sides():
    standard_lock = multiprocessing.Lock()
    with pytest.raises(TypeError, match=r"plait Condition .*multiprocessing\.synchronize\.Lock"):
        PLAIT.Condition(standard_lock)
    with pytest.raises(TypeError, match=r"plait Lock .*multiprocessing\.synchronize\.Lock"):
        plait.ipc.sharedctypes.Value("i", 0, lock=standard_lock)
