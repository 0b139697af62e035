"""The C cores of locks and queues (``_sync``, ``_ring``) under valgrind: no invalid
read, write or free in their code.

The interpreter is not built for valgrind and reports errors of its own, so the test
counts only the reports whose stack passes through our two modules.
"""

import shutil

import pytest

from tests.support import valgrind_reports

SCENARIO = """
import os, threading, queue, pickle
import numpy as np
from plait.ipc.synchronize import Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event
from plait.ipc.queues import Queue, JoinableQueue
from plait.ipc import Pipe
lock, rlock, sem, bsem = Lock(), RLock(), Semaphore(0), BoundedSemaphore(1)
for _ in range(100):
    with lock, rlock, rlock:
        pass
assert not sem.acquire(timeout=0.01)
sem.release(); sem.acquire()
try:
    bsem.release()
except ValueError:
    pass
t = threading.Thread(target=lambda: [sem.release() for _ in range(50)])
t.start()
for _ in range(50):
    assert sem.acquire(timeout=10)
t.join()
cond, event = Condition(), Event()
threading.Timer(0.05, event.set).start()
assert event.wait(10)
a, b = Pipe()
a.send((lock, Queue(3)))
lock2, q3 = b.recv()
q = JoinableQueue(capacity=1 << 16)
for i in range(300):
    q.put((i, b"x" * (i * 37 % 3000)))
q.put(np.arange(30000))
assert [q.get(timeout=5)[0] for _ in range(300)] == list(range(300))
assert q.get(timeout=5).sum() == np.arange(30000).sum()
for _ in range(301):
    q.task_done()
q.join(5)
try:
    q3.get(timeout=0.01)
except queue.Empty:
    pass
t = threading.Thread(target=lambda: [q3.put(i) for i in range(100)])
t.start()
assert [q3.get(timeout=10) for _ in range(100)] == list(range(100))
t.join()
print("scenario done")
"""


@pytest.mark.timeout(240)
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind not installed")
def test_native_cores_are_clean_under_valgrind(no_leaks):
    blocks = valgrind_reports(SCENARIO, timeout=230)
    ours = [b for b in blocks if "_sync" in b or "_ring" in b]
    assert ours == [], "\n".join(ours)
