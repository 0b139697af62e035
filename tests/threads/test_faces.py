"""The drop-in faces expose the standard modules' public names, and the standard classes."""

import queue
import threading

import plait.queue
import plait.threading
import plait.threads


def test_threading_face_covers_the_standard_names():
    missing = set(threading.__all__) - set(plait.threading.__all__)
    assert not missing
    for name in plait.threading.__all__:
        assert hasattr(plait.threading, name), name


def test_queue_face_covers_the_standard_names():
    missing = set(queue.__all__) - set(plait.queue.__all__)
    assert not missing
    for name in plait.queue.__all__:
        assert hasattr(plait.queue, name), name


def test_exceptions_users_catch_are_the_standard_ones():
    assert plait.queue.Empty is queue.Empty
    assert plait.queue.Full is queue.Full
    assert plait.threading.BrokenBarrierError is threading.BrokenBarrierError
    assert plait.threading.ThreadError is threading.ThreadError
    if hasattr(queue, "ShutDown"):
        assert plait.queue.ShutDown is queue.ShutDown


def test_thread_is_a_threading_thread():
    assert issubclass(plait.threading.Thread, threading.Thread)
    assert issubclass(plait.threading.Timer, threading.Thread)


def test_threads_package_exports_what_it_says():
    for name in plait.threads.__all__:
        assert hasattr(plait.threads, name), name
