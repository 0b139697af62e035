"""Functions, classes and programs the manager tests run in children (importable by spawn)."""

from __future__ import annotations

import os
import queue
import time


def set_item(d, key, value):
    d[key] = value


def add_to_shared(d, lock, key, times):
    for _ in range(times):
        with lock:
            d[key] = d.get(key, 0) + 1


def append_pid(items):
    items.append(os.getpid())


def create_then_block(manager_address, authkey, ready, q):
    """Make objects of its own, say so, then sit in a call on the server (to be killed)."""
    from plait.managers import SyncManager

    m = SyncManager(address=manager_address, authkey=authkey)
    m.connect()
    mine = [m.list(range(10)), m.dict(a=1)]
    ready.set()
    q.get(timeout=60)  # blocks on the server until the test kills this process
    del mine


def slow_then_never_reached(counter):
    counter.slow(30)


class Counter:
    """A custom shared type."""

    def __init__(self, start: int = 0) -> None:
        self.value = start
        self._sleeping = 0

    def add(self, n: int = 1) -> int:
        self.value += n
        return self.value

    def get(self) -> int:
        return self.value

    def slow(self, seconds: float) -> int:
        self._sleeping += 1
        try:
            time.sleep(seconds)
        finally:
            self._sleeping -= 1
        return self.value

    def sleeping(self) -> int:
        """How many ``slow`` calls are in progress."""
        return self._sleeping

    def fail(self) -> None:
        raise KeyError("no such counter")

    def _hidden(self) -> str:
        return "hidden"


SERVER_PROGRAM = """
import sys
from plait.managers import BaseManager
sys.path.insert(0, {tests!r})
from managers.targets import Counter

class CounterManager(BaseManager):
    pass

CounterManager.register("Counter", Counter)
CounterManager.register("shared", callable=lambda: SHARED)
SHARED = Counter(100)

manager = CounterManager(address=("127.0.0.1", 0), authkey=b"tcp key")
server = manager.get_server()
print(server.address[1], flush=True)
server.serve_forever()
"""

CLIENT_PROGRAM = """
import sys
from plait.managers import BaseManager

class CounterManager(BaseManager):
    pass

CounterManager.register("Counter")
CounterManager.register("shared")

manager = CounterManager(address=("127.0.0.1", int(sys.argv[1])), authkey=sys.argv[2].encode())
try:
    manager.connect()
except Exception as exc:
    print(type(exc).__name__, exc)
    sys.exit(3)
c = manager.Counter(5)
c.add(2)
shared = manager.shared()
shared.add(1)
print(c.get(), shared.get(), type(c).__name__)
try:
    c._callmethod("_hidden")
except AttributeError as exc:
    print("AttributeError", exc)
manager.shutdown()
"""


def consume(q, results, count):
    """Take ``count`` items (each get may block) and report them; then more calls."""
    got = [q.get(timeout=30) for _ in range(count)]
    results.put(got)
    results.put(q.qsize())


def wait_then_set(ev_in, ev_out):
    if ev_in.wait(30):
        ev_out.set()


def create_then_wait_forever(manager_address, authkey, ready):
    """Make objects of its own, then sit in a call that nothing will ever end."""
    from plait.managers import SyncManager

    m = SyncManager(address=manager_address, authkey=authkey)
    m.connect()
    mine = [m.list(range(10)), m.Event()]
    ready.set()
    mine[1].wait(120)


def managers_module(family_name: str):
    """The ``managers`` module of a family by name (children import it themselves)."""
    if family_name == "plait":
        import plait.multiprocessing.managers as managers
    else:
        import multiprocessing.managers as managers
    return managers


def put_through_xml_manager(family_name, address, authkey, values):
    """Connect with the xmlrpclib serializer and put ``values`` (a tuple) in the queue."""
    managers = managers_module(family_name)

    class QueueClient(managers.BaseManager):
        pass

    QueueClient.register("get_queue")
    m = QueueClient(address=address, authkey=authkey, serializer="xmlrpclib")
    m.connect()
    m.get_queue().put(values)


class FooBar:
    """The standard suite's ``FooBar``: one public method, one failing, one private."""

    def f(self):
        return "f()"

    def g(self):
        raise ValueError("g failed")

    def _h(self):
        return "_h()"


def refuse(*args):
    """A callable that fails when the server calls it to make an object."""
    raise ValueError(f"refused {args!r}")


def attach_and_write(block, data: bytes) -> None:
    """Attach a shared memory block by its pickle (its name) and write ``data`` to it."""
    block.buf[: len(data)] = data
    block.close()


_queue: queue.Queue = queue.Queue()


def get_queue() -> queue.Queue:
    """The one queue a ``get_queue`` manager serves (module-level: its server's own)."""
    return _queue


LOCAL_SET = None


def make_local_set(family_name: str) -> None:
    """A ``ProcessLocalSet`` with one item, in this module (what a forked child inherits)."""
    global LOCAL_SET
    LOCAL_SET = managers_module(family_name).ProcessLocalSet()
    LOCAL_SET.add(1)


def send_local_set_length(conn) -> None:
    conn.send(len(LOCAL_SET))
    conn.close()
