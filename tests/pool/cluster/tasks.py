"""Task functions the cluster tests send to Dask and Ray workers (importable there)."""

from __future__ import annotations

import os
import signal
import threading
import time

_initialized: list = []


def square(x):
    return x * x


def add(a, b):
    return a + b


def fail(x):
    raise ValueError(f"bad item {x}")


def sleep_return(seconds, value=None):
    time.sleep(seconds)
    return value


def kill_self_on(x, victim):
    """Return ``x``, except for ``victim``: that item SIGKILLs its own worker process."""
    if x == victim:
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)
    return x


def kill_self_on_3(x):
    return kill_self_on(x, 3)


def kill_self_once(x, marker):
    """SIGKILL the worker the first time (``marker`` does not exist yet), then return ``x``."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return x
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)
    return x


def remember(value):
    """An initializer: what it was given, seen later by ``initialized``."""
    _initialized.append(value)


def initialized(_=None):
    return list(_initialized)


def unpicklable_result(_=None):
    return threading.Lock()


def cluster_pid(_=None):
    return os.getpid()
