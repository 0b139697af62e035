"""The two implementations every compatibility scenario runs on."""

from __future__ import annotations

import multiprocessing.connection
import types

import pytest

import plait.ipc

STANDARD = types.SimpleNamespace(
    name="multiprocessing",
    Pipe=multiprocessing.Pipe,
    Listener=multiprocessing.connection.Listener,
    Client=multiprocessing.connection.Client,
    wait=multiprocessing.connection.wait,
    BufferTooShort=multiprocessing.BufferTooShort,
    AuthenticationError=multiprocessing.AuthenticationError,
)
PLAIT = types.SimpleNamespace(
    name="plait",
    Pipe=plait.ipc.Pipe,
    Listener=plait.ipc.Listener,
    Client=plait.ipc.Client,
    wait=plait.ipc.wait,
    BufferTooShort=plait.ipc.BufferTooShort,
    AuthenticationError=plait.ipc.AuthenticationError,
)


@pytest.fixture(params=[STANDARD, PLAIT], ids=lambda api: api.name)
def api(request):
    """``multiprocessing.connection`` or ``plait.ipc``: the same scenario runs on both."""
    return request.param
