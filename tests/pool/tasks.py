"""Task functions the pool tests send to workers (importable by spawned workers too)."""

from __future__ import annotations

import os
import signal
import threading
import time

from tests.support import wait_until


def square(x):
    return x * x


def add(a, b):
    return a + b


def pid(_=None):
    return os.getpid()


def fail(x):
    raise ValueError(f"bad item {x}")


def fail_on_odd(x):
    if x % 2:
        raise ValueError(f"bad item {x}")
    return x


def sleep_return(seconds, value=None):
    time.sleep(seconds)
    return value


def return_once_path_exists(path, value=None, timeout=30.0):
    """Return ``value`` once ``path`` exists: a task that runs until the test lets it end
    (``TimeoutError`` if it never does)."""
    if not wait_until(lambda: os.path.exists(path), timeout):
        raise TimeoutError(f"{path} did not appear within {timeout} s")
    return value


def log_once_path_exists(log, path, value):
    """``return_once_path_exists``, then append ``value`` to the file ``log``: the log
    says which tasks ran, in which order."""
    return_once_path_exists(path)
    with open(log, "a") as f:
        f.write(f"{value}\n")
    return value


def kill_self_on(x, victim):
    """Return ``x``, except for ``victim``: that item SIGKILLs its own worker."""
    if x == victim:
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)
    return x


def exit_on(x, victim, code=3):
    if x == victim:
        os._exit(code)
    return x


def report_pid_and_sleep(path, seconds):
    """Write this worker's pid to ``path`` then sleep: the test kills us from outside."""
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
    return "slept"


def unpicklable_result(_=None):
    return threading.Lock()


class Unpicklable(Exception):
    def __init__(self):
        super().__init__("an exception holding a lock")
        self.lock = threading.Lock()


def raise_unpicklable(_=None):
    raise Unpicklable()


def identity(x):
    return x


def set_global(value):
    global INITIALIZED
    INITIALIZED = value


INITIALIZED = None


def read_global(_=None):
    return INITIALIZED


def kill_self_on_7(x):
    return kill_self_on(x, 7)


class NeedsTwoArgs(Exception):
    """Pickles, but cannot be rebuilt: ``__init__`` wants two arguments, args holds one."""

    def __init__(self, a, b):
        super().__init__(f"{a} and {b}")


def raise_needs_two_args(_=None):
    raise NeedsTwoArgs(1, 2)


class BreaksOnLoad:
    def __reduce__(self):
        return (_refuse, ())


def _refuse():
    raise RuntimeError("this object refuses to be rebuilt")


def result_that_breaks_on_load(_=None):
    return BreaksOnLoad()


def broken_initializer():
    raise RuntimeError("this initializer always fails")


def log_and_kill_on(x, path, victim):
    """Append ``x`` to the file ``path`` (one line per run), then ``kill_self_on``."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, b"%d\n" % x)
    finally:
        os.close(fd)
    return kill_self_on(x, victim)


def breaks_on_load_at_150(x):
    return BreaksOnLoad() if x == 150 else x


class SayWhenError(ValueError):
    """What ``raise_at`` raises: an input iterator's own error."""


def raise_at(total, when):
    """Yield ``0 .. total-1``, but raise ``SayWhenError`` when ``when`` is reached."""
    for i in range(total):
        if i == when:
            raise SayWhenError(f"the input raised at {when}")
        yield i


class Counted:
    """An object that counts its live instances in this process (``Counted.alive``)."""

    alive = 0

    def __new__(cls):  # unpickled copies count too: they are made by __new__ alone
        cls.alive += 1
        return super().__new__(cls)

    def __del__(self) -> None:
        type(self).alive -= 1


def nested_pool_sum(face_name, n):
    """Run a pool of 2 inside this worker; return the sum of the squares of ``range(n)``."""
    import importlib  # noqa: PLC0415 - the face the test chose

    face = importlib.import_module(face_name)
    with face.Pool(2) as pool:
        return sum(pool.map(square, range(n)))


def inner_map(n):
    """Run a pool inside this worker: squares of ``range(n)``, and the inner pool's size."""
    from plait.pool import Pool  # noqa: PLC0415 - in the worker

    with Pool() as pool:
        return pool.map(square, range(n)), pool._processes


def start_child_and_report(path):
    """Start a plain (non-daemon) process that sleeps; write its pid to ``path``; sleep."""
    import plait.process  # noqa: PLC0415 - in the worker

    child = plait.process.Process(target=time.sleep, args=(60,))
    child.start()
    with open(path + ".tmp", "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    os.rename(path + ".tmp", path)
    time.sleep(60)


def sleep_until_soft_timeout(seconds):
    """Sleep; at the soft timeout clean up and return what happened."""
    import plait  # noqa: PLC0415 - in the worker

    try:
        time.sleep(seconds)
    except plait.SoftTimeoutError:
        return "cleaned up"
    return "finished"


def ignore_soft_timeout(seconds):
    """Catch the soft timeout and keep running: the hard one must stop us."""
    import plait  # noqa: PLC0415 - in the worker

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(deadline - time.monotonic())
        except plait.SoftTimeoutError:
            pass
    return "finished"


def environment(names):
    """The values of the environment variables ``names`` in this worker."""
    return [os.environ.get(n) for n in names]


def blas_threads(_=None):
    """The thread counts of the BLAS pools numpy loaded here (threadpoolctl)."""
    import numpy  # noqa: F401, PLC0415 - loads its BLAS
    from threadpoolctl import threadpool_info  # noqa: PLC0415

    return sorted({pool["num_threads"] for pool in threadpool_info()})


_hoard: list = []


def grow_and_return(megabytes):
    """Keep ``megabytes`` more of memory in this worker; return the worker's pid."""
    _hoard.append(bytearray(megabytes << 20))  # zeroed: resident
    return os.getpid()


def grow_slowly(megabytes):
    """Allocate ``megabytes`` one at a time, then sleep: the pool must kill us first."""
    for _ in range(megabytes):
        _hoard.append(bytearray(1 << 20))
    time.sleep(60)
    return "survived"


def note_sigterm_and_sleep(path):
    """Write "TERM" to ``path`` if SIGTERM comes, then exit; else sleep."""

    def on_term(signum, frame):
        with open(path, "w") as f:
            f.write("TERM")
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    open(path + ".ready", "w").close()
    time.sleep(60)
