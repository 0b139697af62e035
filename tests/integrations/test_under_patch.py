"""Libraries that import ``multiprocessing`` themselves, under ``plait.patch()``: each runs
a typical workload of its own in a fresh interpreter, unpatched and patched, computes
the same, and (patched) runs it in plait's processes. Libraries built on the standard
internals keep the standard module, with one PatchWarning that names them."""

from __future__ import annotations

import ast
import importlib.util

import pytest

from tests.support import run_python

PROGRAM = r"""
import sys
import warnings

import plait

if sys.argv[2] == "patched":
    plait.patch()


def where(x):
    import plait.process

    # In a process plait started, plait knows it by the name it gave it.
    return x * x, plait.process.current_process().name != "MainProcess"


def run_dask():
    import dask.bag

    bag = dask.bag.from_sequence(range(40), npartitions=8).map(where)
    return bag.compute(scheduler="processes")


def run_dask_config_pool():
    import dask
    import dask.bag

    import plait.futures

    with plait.futures.ProcessPoolExecutor(2) as pool, dask.config.set(pool=pool):
        bag = dask.bag.from_sequence(range(40), npartitions=8).map(where)
        return bag.compute(scheduler="processes")


def run_pebble():
    import concurrent.futures
    import time

    import pebble

    with pebble.ProcessPool(max_workers=2) as pool:
        out = list(pool.map(where, range(20)).result())
        late = pool.schedule(time.sleep, args=(30,), timeout=1)
        try:
            late.result()
        except concurrent.futures.TimeoutError:  # the builtin one from 3.11 on
            out.append(("timed out", out[-1][1]))
    return out


def run_joblib_default():
    from joblib import Parallel, delayed

    return Parallel(n_jobs=2)(delayed(where)(i) for i in range(20))


def run_standard_executor_on_a_plait_context():
    import concurrent.futures.process

    import plait.multiprocessing

    # The standard class itself, whatever patch() serves under its name, on plait's
    # context (patched run) or on the standard one (plain run).
    executor_class = vars(concurrent.futures.process)["ProcessPoolExecutor"]
    if sys.argv[2] == "patched":
        context = plait.multiprocessing.get_context("spawn")
    else:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
    with executor_class(2, mp_context=context) as executor:
        return list(executor.map(where, range(10)))


def run_subclasses():
    from multiprocessing.pool import Pool

    class Internal(Pool):  # written against the standard internals, as joblib's pools
        def _setup_queues(self):
            super()._setup_queues()
            self.queue_module = type(self._inqueue).__module__

    class Public(Pool):  # only the public interface
        def squares(self, xs):
            return self.map(where, xs)

    with Internal(2) as pool:
        out = pool.map(where, range(4))
        out.append((pool.queue_module, Internal.__mro__[1].__module__))
    with Public(2) as pool:
        out += pool.squares(range(4))
        out.append(Public.__mro__[1].__module__)

    import multiprocessing

    class ResultProcess(multiprocessing.Process):  # private names plait's Process has
        def run(self):
            self._queue.put(self._target(*self._args))

    queue = multiprocessing.SimpleQueue()
    child = ResultProcess(target=where, args=(7,))
    child._queue = queue
    child.start()
    out.append((queue.get(), ResultProcess.__mro__[1].__module__))
    child.join(60)
    return out


if __name__ == "__main__":
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = globals()["run_" + sys.argv[1]]()
    print(repr(result))
    print(repr([str(w.message) for w in caught if issubclass(w.category, plait.PatchWarning)]))
"""


def run(tmp_path, workload: str, mode: str):
    script = tmp_path / "workload.py"
    script.write_text(PROGRAM)
    done = run_python(str(script), workload, mode, timeout=150)
    assert done.returncode == 0, done.stderr
    result, warned = done.stdout.splitlines()[-2:]
    return ast.literal_eval(result), ast.literal_eval(warned)


def values_and_places(result):
    return [value for value, _ in result], {place for _, place in result}


def needs(module: str):
    return pytest.mark.skipif(
        importlib.util.find_spec(module) is None, reason=f"{module} is not installed"
    )


@pytest.mark.timeout(200)
@pytest.mark.parametrize(
    "workload",
    [
        pytest.param("dask", marks=needs("dask")),
        pytest.param("pebble", marks=needs("pebble")),
        "standard_executor_on_a_plait_context",
    ],
)
def test_the_library_computes_the_same_and_runs_in_plait_processes_under_patch(tmp_path, workload):
    plain, plain_warned = run(tmp_path, workload, "plain")
    patched, patched_warned = run(tmp_path, workload, "patched")
    assert values_and_places(plain)[0] == values_and_places(patched)[0]
    assert values_and_places(patched)[1] == {True}
    assert values_and_places(plain)[1] == {False}
    assert plain_warned == patched_warned == []


@pytest.mark.timeout(200)
@needs("dask")
def test_dask_runs_on_a_plait_executor_given_as_its_pool_without_patch(tmp_path):
    result, warned = run(tmp_path, "dask_config_pool", "plain")
    assert values_and_places(result) == ([x * x for x in range(40)], {True})
    assert warned == []


@pytest.mark.timeout(200)
@needs("joblib")
def test_joblib_keeps_its_standard_backends_under_patch_and_says_so_once(tmp_path):
    plain, plain_warned = run(tmp_path, "joblib_default", "plain")
    patched, patched_warned = run(tmp_path, "joblib_default", "patched")
    assert plain == patched
    assert values_and_places(patched)[1] == {False}  # loky's processes, not plait's
    assert plain_warned == []
    assert len(patched_warned) == 1
    assert "joblib keeps the standard multiprocessing" in patched_warned[0]
    assert 'Parallel(backend="plait")' in patched_warned[0]


@pytest.mark.timeout(200)
def test_a_subclass_using_the_standard_internals_stays_standard_with_one_warning(tmp_path):
    plain, plain_warned = run(tmp_path, "subclasses", "plain")
    patched, patched_warned = run(tmp_path, "subclasses", "patched")
    assert plain_warned == []
    assert plain[:4] == patched[:4] == [(x * x, False) for x in range(4)]
    # The one using _inqueue/_setup_queues runs wholly on the standard module...
    assert patched[4] == plain[4] == ("multiprocessing.queues", "multiprocessing.pool")
    # ... the one using the public interface runs on plait, in plait's workers.
    assert plain[5:9] == [(x * x, False) for x in range(4)]
    assert patched[5:9] == [(x * x, True) for x in range(4)]
    assert (plain[9], patched[9]) == ("multiprocessing.pool", "plait.pool.pool")
    # ... and so does one that uses the private names plait's Process honours.
    assert plain[10] == ((49, False), "multiprocessing.context")
    assert patched[10] == ((49, True), "plait.process.process")
    assert len(patched_warned) == 1
    assert (
        "Internal uses _inqueue, _setup_queues of multiprocessing.pool.Pool" in (patched_warned[0])
    )
    assert "stays a subclass of the standard class" in patched_warned[0]
