"""The two implementations every compatibility scenario of ``plait.ipc`` runs on.

``STANDARD`` is ``multiprocessing`` (its fork context for processes and primitives),
``PLAIT`` is plait's ipc layer: connections, synchronization primitives, queues and shared
ctypes, the same names on both.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import multiprocessing.sharedctypes
import types

import pytest

import plait.ipc
import plait.ipc.queues as queues
import plait.ipc.sharedctypes as sharedctypes
import plait.ipc.synchronize as sync
import plait.process

_STD = multiprocessing.get_context("fork")
_PLAIT = plait.process.get_context("fork")

STANDARD = types.SimpleNamespace(
    name="multiprocessing",
    Pipe=multiprocessing.Pipe,
    Listener=multiprocessing.connection.Listener,
    Client=multiprocessing.connection.Client,
    wait=multiprocessing.connection.wait,
    BufferTooShort=multiprocessing.BufferTooShort,
    AuthenticationError=multiprocessing.AuthenticationError,
    Process=_STD.Process,
    Lock=_STD.Lock,
    RLock=_STD.RLock,
    Semaphore=_STD.Semaphore,
    BoundedSemaphore=_STD.BoundedSemaphore,
    Condition=_STD.Condition,
    Event=_STD.Event,
    Barrier=_STD.Barrier,
    Queue=_STD.Queue,
    JoinableQueue=_STD.JoinableQueue,
    SimpleQueue=_STD.SimpleQueue,
    sharedctypes=multiprocessing.sharedctypes,
)
PLAIT = types.SimpleNamespace(
    name="plait",
    Pipe=plait.ipc.Pipe,
    Listener=plait.ipc.Listener,
    Client=plait.ipc.Client,
    wait=plait.ipc.wait,
    BufferTooShort=plait.ipc.BufferTooShort,
    AuthenticationError=plait.ipc.AuthenticationError,
    Process=_PLAIT.Process,
    Lock=sync.Lock,
    RLock=sync.RLock,
    Semaphore=sync.Semaphore,
    BoundedSemaphore=sync.BoundedSemaphore,
    Condition=sync.Condition,
    Event=sync.Event,
    Barrier=sync.Barrier,
    Queue=queues.Queue,
    JoinableQueue=queues.JoinableQueue,
    SimpleQueue=queues.SimpleQueue,
    sharedctypes=sharedctypes,
)


@pytest.fixture(params=[STANDARD, PLAIT], ids=lambda api: api.name)
def api(request):
    """``multiprocessing`` or ``plait.ipc``: the same scenario runs on both."""
    return request.param
