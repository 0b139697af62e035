"""plait under the libraries users already use: joblib and tqdm, in one run.

Cases:
- (a) joblib ``Parallel(n_jobs=2)`` over tiny tasks, workers warm (a previous call
  started them; both backends keep their workers between calls): plait's backend
  (``plait.integrations.joblib``) beside joblib's default, loky. joblib's sequential
  backend (``n_jobs=1``) is shown as the ceiling of joblib's own dispatch: the work is
  nothing, so what it measures is joblib's per-task bookkeeping in the parent.
- (b) the same, cold: one ``Parallel`` call in a fresh interpreter, as a script makes it,
  starting its workers (the interpreter's own start is not counted).
- (c) joblib over 1 ms tasks (busy CPU), warm: throughput per worker.
- (d) tqdm's ``process_map`` (a new executor per call, so workers start each time) over
  tiny tasks and (e) over 1 ms tasks, under ``plait.patched()`` beside plain
  ``process_map`` (the standard ``ProcessPoolExecutor``), with tqdm's default chunksize 1.

Run: python benchmarks/bench_integrations.py [--quick]
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import joblib
from harness import Bench, rate
from joblib import Parallel, delayed
from tqdm.contrib.concurrent import process_map

import plait
import plait.integrations.joblib  # noqa: F401 - registers the backend "plait"

QUICK = "--quick" in sys.argv
ROUNDS = 3 if QUICK else 5
WORKERS = 2
N_TINY = 50_000 if QUICK else 200_000
N_COLD = 20_000
N_MS = 400 if QUICK else 1_000
N_MAP_TINY = 1_000 if QUICK else 3_000
N_MAP_MS = 200 if QUICK else 400


def square(x: int) -> int:
    return x * x


def busy_ms(x: int) -> int:
    end = time.perf_counter() + 0.001
    while time.perf_counter() < end:
        pass
    return x


def parallel(backend: str, func, count: int, n_jobs: int = WORKERS):
    def run():
        return sum(Parallel(n_jobs=n_jobs, backend=backend)(delayed(func)(i) for i in range(count)))

    return lambda: rate(count, run)


COLD = """
import sys, time
{setup}
from joblib import Parallel, delayed

def square(x):
    return x * x

if __name__ == "__main__":
    t0 = time.perf_counter()
    total = sum(Parallel(n_jobs={workers}, backend="{backend}")(
        delayed(square)(i) for i in range({count})))
    print({count} / (time.perf_counter() - t0), total)
"""


def cold(backend: str, setup: str = ""):
    source = textwrap.dedent(
        COLD.format(setup=setup, workers=WORKERS, backend=backend, count=N_COLD)
    )

    def run():
        out = subprocess.run(
            [sys.executable, "-c", source], capture_output=True, text=True, timeout=120, check=True
        )
        figure, total = out.stdout.split()
        return float(figure), int(total)

    return run


def mapped(func, count: int, patched: bool):
    def run():
        if patched:
            with plait.patched():
                return sum(process_map(func, range(count), max_workers=WORKERS, disable=True))
        return sum(process_map(func, range(count), max_workers=WORKERS, disable=True))

    return lambda: rate(count, run)


def main() -> None:
    bench = Bench("integrations", packages=["joblib", "loky", "tqdm"], rounds=ROUNDS, cap=120)
    print(
        f"# {WORKERS} workers; counts: (a) {N_TINY:,} (b) {N_COLD:,} (c) {N_MS:,} "
        f"(d) {N_MAP_TINY:,} (e) {N_MAP_MS:,}; joblib {joblib.__version__}"
    )
    for backend in ("plait", "loky"):  # start both backends' kept workers
        Parallel(n_jobs=WORKERS, backend=backend)(delayed(square)(i) for i in range(100))
    bench.case(
        f"(a) joblib Parallel, {N_TINY:,} tiny tasks, warm",
        {
            "plait backend": parallel("plait", square, N_TINY),
            "loky (joblib's default)": parallel("loky", square, N_TINY),
            "sequential (dispatch ceiling)": parallel("sequential", square, N_TINY, 1),
        },
        unit="tasks/s",
    )
    bench.case(
        f"(b) joblib Parallel, {N_COLD:,} tiny tasks, cold (fresh interpreter)",
        {
            "plait backend": cold("plait", "import plait.integrations.joblib"),
            "loky (joblib's default)": cold("loky"),
        },
        unit="tasks/s",
    )
    bench.case(
        f"(c) joblib Parallel, {N_MS:,} tasks of 1 ms, warm",
        {
            "plait backend": parallel("plait", busy_ms, N_MS),
            "loky (joblib's default)": parallel("loky", busy_ms, N_MS),
        },
        unit="tasks/s",
    )
    bench.case(
        f"(d) tqdm process_map, {N_MAP_TINY:,} tiny tasks, chunksize 1",
        {
            "under plait.patched()": mapped(square, N_MAP_TINY, True),
            "standard ProcessPoolExecutor": mapped(square, N_MAP_TINY, False),
        },
        unit="tasks/s",
    )
    bench.case(
        f"(e) tqdm process_map, {N_MAP_MS:,} tasks of 1 ms, chunksize 1",
        {
            "under plait.patched()": mapped(busy_ms, N_MAP_MS, True),
            "standard ProcessPoolExecutor": mapped(busy_ms, N_MAP_MS, False),
        },
        unit="tasks/s",
    )
    print(f"\n# pid {os.getpid()}; joblib's kept workers end with the interpreter")
    bench.close()


if __name__ == "__main__":
    main()
