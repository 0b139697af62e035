"""The C queue engine under valgrind: no invalid read, write or free in its code.

The interpreter itself is not built for valgrind and reports errors of its own, so the
test counts only the error reports whose stack passes through the engine (``_queue``).
"""

import shutil

import pytest

from tests.support import valgrind_reports

SCENARIO = """
import gc, threading
import plait.queue as pq
for cls in (pq.Queue, pq.LifoQueue, pq.PriorityQueue, pq.SimpleQueue):
    q = cls()
    for i in range(500):
        q.put((i, "x" * (i % 7)))
    assert len([q.get(timeout=1) for i in range(500)]) == 500
    try:
        q.get(timeout=0.001)
    except pq.Empty:
        pass
bounded = pq.Queue(2)
t = threading.Thread(target=lambda: [bounded.put(i, timeout=5) for i in range(200)])
t.start()
assert sorted(bounded.get(timeout=5) for _ in range(200)) == list(range(200))
t.join()
shut = pq.Queue()
shut.put([1])
shut.put(shut)
shut.shutdown(immediate=True)
try:
    shut.get()
except pq.ShutDown:
    pass
locked = pq.Queue(3)
with locked.mutex:
    locked.queue.extend([1, 2])
    locked.unfinished_tasks = 2
locked.put(3)
assert [locked.get() for _ in range(3)] == [1, 2, 3]
cycle = pq.Queue()
cycle.put(cycle)
del cycle
gc.collect()
print("scenario done")
"""


@pytest.mark.timeout(180)
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind not installed")
def test_queue_engine_is_clean_under_valgrind(no_leaks):
    blocks = valgrind_reports(SCENARIO, timeout=170)
    ours = [b for b in blocks if "_queue" in b]
    assert ours == [], "\n".join(ours)
