"""An ``imap`` input is read in the background: slow, blocking and endless inputs.

The standard pool reads every input in its task handler thread; plait's feeder thread
does the same for any input that is not held in memory (``plait.pool.jobs``), within a
window. Neither ``imap()``, ``next()`` nor ``close()`` reads the input in the caller's
thread, so a crawler whose results feed its own input finishes, the first result of a
slow input comes with its first item, and ``close()`` returns while an input is open.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import plait.futures
from plait.pool import Pool, PoolTerminatedError, ThreadPool
from tests.pool import tasks
from tests.pool.test_compat import FACES, check_leaks


def children(node: int) -> list[int]:
    """The links of ``node`` in a binary tree of 15 nodes (1 is the root)."""
    return [2 * node, 2 * node + 1] if node < 8 else []


class Gated:
    """An input that yields ``before`` items at once, then waits until ``gate`` is set (at
    most ``wait`` seconds), then yields ``after`` more. ``produced`` lists what it
    yielded, ``readers`` the threads that read it."""

    def __init__(self, before: int, after: int, wait: float = 10.0) -> None:
        self.before, self.after, self.wait = before, after, wait
        self.gate = threading.Event()
        self.produced: list[int] = []
        self.readers: set[threading.Thread] = set()

    def readers_end(self, timeout: float = 10.0) -> bool:
        """Whether the threads that read it (the caller's excepted) end within ``timeout``."""
        for reader in self.readers - {threading.current_thread()}:
            reader.join(timeout)
        return not any(r.is_alive() for r in self.readers - {threading.current_thread()})

    def __iter__(self):
        for i in range(self.before + self.after):
            self.readers.add(threading.current_thread())
            if i == self.before:
                self.gate.wait(self.wait)
            self.produced.append(i)
            yield i


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("kind", ["Pool", "ThreadPool"])
@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
@pytest.mark.timeout(90)
def test_a_crawler_whose_results_feed_its_input_finishes(face, kind, method, request):
    # The input waits for links that only the consumer's results bring.
    check_leaks(request, face)
    links: queue.Queue = queue.Queue()

    def to_visit():
        while (node := links.get()) is not None:
            yield node

    found: list[int] = []
    crawled = threading.Event()

    def crawl(pool) -> None:
        pending = 1
        links.put(1)
        for kids in getattr(pool, method)(children, to_visit()):
            found.extend(kids)
            pending += len(kids) - 1
            for kid in kids:
                links.put(kid)
            if pending == 0:
                links.put(None)
        crawled.set()

    with getattr(face, kind)(2) as pool:
        crawler = threading.Thread(target=crawl, args=(pool,), daemon=True)
        crawler.start()
        finished = crawled.wait(30)
        links.put(None)  # ends a crawl that hung, so that the test fails instead
        crawler.join(30)
    assert finished, "the crawl hung: its input was read where its results are consumed"
    assert sorted(found) == list(range(2, 16))


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("kind", ["Pool", "ThreadPool"])
@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
@pytest.mark.timeout(60)
def test_the_first_result_of_a_slow_input_comes_with_its_first_item(face, kind, method, request):
    check_leaks(request, face)
    source = Gated(before=1, after=2)
    with getattr(face, kind)(2) as pool:
        results = getattr(pool, method)(tasks.square, source)
        read_when_returned = len(source.produced)
        first = results.next(30)
        read_when_first = list(source.produced)
        source.gate.set()
        rest = sorted(results)
    assert read_when_returned < 2  # imap() did not wait for the input
    assert (first, read_when_first) == (0, [0])  # nor did next() wait for more of it
    assert rest == [1, 4]
    assert threading.current_thread() not in source.readers


@pytest.mark.parametrize("face", FACES)
@pytest.mark.timeout(60)
def test_close_returns_while_an_endless_input_is_open(face, request):
    check_leaks(request, face)
    stop, ended = threading.Event(), threading.Event()

    def endless():
        i = 0
        while not stop.is_set() and i < 10_000:
            time.sleep(0.001)  # slowly: the standard pool reads all of it after close()
            yield i
            i += 1
        ended.set()

    pool = face.Pool(2)
    try:
        results = pool.imap(tasks.square, endless())
        assert [results.next(30) for _ in range(5)] == [0, 1, 4, 9, 16]
        pool.close()
        assert not ended.is_set()  # close() returned while the input was still open
    finally:
        pool.terminate()
        stop.set()
    pool.join()


@pytest.mark.parametrize("kind", [Pool, ThreadPool])
@pytest.mark.timeout(60)
def test_close_waits_in_join_for_the_rest_of_a_blocked_input(kind, no_leaks):
    source = Gated(before=3, after=3)
    pool = kind(2)
    results = pool.imap(tasks.square, source)
    assert [results.next(30) for _ in range(3)] == [0, 1, 4]
    pool.close()  # returns while the input waits for the gate
    assert source.produced == [0, 1, 2]
    source.gate.set()
    pool.join(30)
    assert list(results) == [9, 16, 25]
    assert pool.stats().workers == ()


@pytest.mark.timeout(60)
def test_close_with_a_buffersize_returns_while_the_input_blocks(no_leaks):
    source = Gated(before=4, after=4)
    with Pool(2) as pool:
        results = pool.imap(tasks.square, source, 1, buffersize=8)
        assert [results.next(30) for _ in range(4)] == [0, 1, 4, 9]
        pool.close()  # the rest will not be read: RuntimeError in its place
        assert source.produced == [0, 1, 2, 3]
        with pytest.raises(RuntimeError, match="buffersize"):
            results.next(30)
        with pytest.raises(StopIteration):
            results.next(30)
        source.gate.set()  # its feeder gets the next item, drops it and ends
        pool.join(30)
    assert source.readers_end()
    assert len(source.produced) == 5


@pytest.mark.parametrize("kind", [Pool, ThreadPool])
@pytest.mark.timeout(60)
def test_terminate_returns_while_the_input_blocks(kind, no_leaks):
    source = Gated(before=1, after=4)
    pool = kind(2)
    results = pool.imap(tasks.square, source)
    assert results.next(30) == 0
    pool.terminate()
    pool.join(30)
    with pytest.raises(PoolTerminatedError):
        results.next(30)
    with pytest.raises(StopIteration):
        results.next(30)
    source.gate.set()  # its feeder gets the next item, drops it and ends
    assert source.readers_end()
    assert len(source.produced) == 2


@pytest.mark.timeout(60)
def test_an_executor_map_closed_early_stops_reading_its_input(no_leaks):
    source = Gated(before=2, after=100)
    with plait.futures.ProcessPoolExecutor(2) as executor:
        results = executor.map(tasks.square, source)
        assert next(results) == 0
        results.close()
        source.gate.set()  # its feeder gets the next item, drops it and ends
        assert source.readers_end()
    assert len(source.produced) == 3


EXITS = """
import threading
from plait.pool import Pool, ThreadPool

def forever():
    yield 1
    threading.Event().wait()  # never returns

if __name__ == "__main__":
    pool = {kind}(2)
    results = pool.imap(abs, forever())
    print(results.next(30), flush=True)
    {end}
"""


@pytest.mark.parametrize("kind", ["Pool", "ThreadPool"])
@pytest.mark.parametrize("end", ["pass", "pool.terminate(); pool.join()", "pool.close()"])
@pytest.mark.timeout(90)
def test_a_program_whose_input_blocks_forever_exits(kind, end, no_leaks):
    code = textwrap.dedent(EXITS).format(kind=kind, end=end)
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the program did not exit: {exc.stdout!r} {exc.stderr!r}")
    assert (done.returncode, done.stdout) == (0, "1\n"), done.stderr
