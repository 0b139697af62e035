"""torch's ``DataLoader(multiprocessing_context=...)`` contract, on a plait context.

torch is not installed in CI (its wheels are gigabytes); this test makes the same check
and the same calls its loader makes on the context it is given, run the same way on the
standard module and on plait's face (``tests.support.run_on_both``):

- the check: ``isinstance(context, multiprocessing.context.BaseContext)``, with the
  *standard* ``multiprocessing`` (torch imports it as ``python_multiprocessing``);
- the workers: ``context.Queue()`` per worker with ``cancel_join_thread()``, one result
  ``context.Queue()``, a ``context.Event()`` that says "done", daemonic
  ``context.Process`` workers that poll their queue with ``get(timeout=)`` and
  ``queue.Empty``; shutdown by the event and a ``None`` per worker, ``join(timeout)``,
  ``is_alive()``, ``terminate()`` for a straggler, then ``close()`` on every queue.
"""

from __future__ import annotations

import pytest

from tests.support import run_on_both

LOADER = """
import multiprocessing as python_multiprocessing
import queue
import sys

import {module} as mp

INTERVAL = 0.05


def worker_loop(dataset, index_queue, data_queue, done_event, worker_id):
    while not done_event.is_set():
        try:
            indices = index_queue.get(timeout=INTERVAL)
        except queue.Empty:
            continue
        if indices is None:
            break
        data_queue.put((worker_id, [dataset[i] for i in indices]))
    data_queue.cancel_join_thread()
    data_queue.close()


def load(context, dataset, batches, workers=2):
    if not isinstance(context, python_multiprocessing.context.BaseContext):
        raise TypeError(f"not a valid context: {{context!r}}")
    result_queue = context.Queue()
    done = context.Event()
    index_queues, processes = [], []
    for worker_id in range(workers):
        index_queue = context.Queue()
        index_queue.cancel_join_thread()
        process = context.Process(
            target=worker_loop, args=(dataset, index_queue, result_queue, done, worker_id)
        )
        process.daemon = True
        process.start()
        index_queues.append(index_queue)
        processes.append(process)
    for n, batch in enumerate(batches):
        index_queues[n % workers].put(batch)
    out = sorted(result_queue.get(timeout=60)[1] for _ in batches)
    done.set()
    for index_queue in index_queues:
        index_queue.put(None)
    for process in processes:
        process.join(timeout=10)
        if process.is_alive():
            process.terminate()
            process.join(timeout=10)
    for index_queue in (*index_queues, result_queue):
        index_queue.cancel_join_thread()
        index_queue.close()
    return out, [process.exitcode for process in processes]


if __name__ == "__main__":
    dataset = [i * i for i in range(32)]
    batches = [list(range(i, i + 4)) for i in range(0, 32, 4)]
    print(load(mp.get_context(sys.argv[1]), dataset, batches))
    try:
        load(object(), dataset, batches)
    except TypeError as e:
        print("refused", type(e).__name__)
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_plait_context_passes_torchs_check_and_serves_its_loader_as_the_standard_one(
    tmp_path, method
):
    out = run_on_both(tmp_path, LOADER, method, timeout=100)
    assert "[0, 1, 4, 9]" in out
    assert out.endswith("[0, 0])\nrefused TypeError\n")
