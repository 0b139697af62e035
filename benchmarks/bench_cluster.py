"""Pools on a cluster: plait's Dask and Ray backends beside Dask's and Ray's own, in one run.

Cases, on local clusters of 2 slots (a Dask ``LocalCluster`` of 2 single-threaded worker
processes; a local Ray with 2 CPUs), all warm (each variant ran a small map first):

- 20,000 tiny tasks (``x * x``), tasks per second. plait's backends batch them into a
  few cluster tasks; Dask's ``client.map`` makes one Dask task per item, and runs on
  the first 2,000 items only (its rate per task does not depend on the count, and all
  20,000 would take minutes); ``ray.util.multiprocessing.Pool.map`` batches by itself.
- 400 tasks of about 10 ms of CPU each: parallel efficiency, the CPU seconds of work
  divided by (2 slots x wall seconds); 1.0 is perfect, the target is 0.85.

Ray variants run when ray is installed (``--no-ray`` leaves them out; Ray's start-up
takes several seconds, outside the timed region). A variant over its cap has its
cluster tasks cancelled, so the next variant does not wait behind them.

Run: python benchmarks/bench_cluster.py [--no-ray]
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time

from harness import Bench, timed

from plait.pool import Pool

ROUNDS = 3
TINY = 20_000
SAMPLE = 2_000
MEDIUM = 400
MEDIUM_SECONDS = 0.01
SLOTS = 2
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def square(x):
    return x * x


def spin(x):
    """About ``MEDIUM_SECONDS`` of CPU, then ``x``."""
    end = time.perf_counter() + MEDIUM_SECONDS
    while time.perf_counter() < end:
        pass
    return x


def backend_pool(backend: str, address=None) -> Pool:
    """The pool a user writes: ``Pool(backend=backend, address=address)``."""
    return Pool(backend=backend, address=address)


def efficiency(seconds: float) -> float:
    return MEDIUM * MEDIUM_SECONDS / (SLOTS * seconds)


def main() -> None:
    import distributed

    use_ray = "--no-ray" not in sys.argv and importlib.util.find_spec("ray") is not None
    peers = ["dask", "distributed", *(["ray"] if use_ray else [])]
    bench = Bench("cluster pools (2 slots: Dask LocalCluster, local Ray)", peers, ROUNDS, 90)
    cluster = distributed.LocalCluster(
        n_workers=SLOTS, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    client = distributed.Client(cluster, set_as_default=False)
    dask_pool = backend_pool("dask", cluster.scheduler_address)
    dask_pool.map(square, range(100))
    client.gather(client.map(square, range(100), pure=False))

    def client_map(func, items):
        futures = client.map(func, items, pure=False)
        try:
            return client.gather(futures)
        finally:
            client.cancel(futures)

    ray_pool = ray_own = None
    if use_ray:
        import ray
        from ray.util.multiprocessing import Pool as RayPool

        ray.init(
            num_cpus=SLOTS,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": ROOT + "/benchmarks"}},
        )
        ray_pool = backend_pool("ray")
        ray_own = RayPool(SLOTS)
        ray_pool.map(square, range(100))
        ray_own.map(square, range(100))

    def per_second(count, fn):
        seconds, out = timed(fn)
        return count / seconds, out

    tiny = list(range(TINY))
    variants = {
        "plait dask backend": lambda: per_second(TINY, lambda: dask_pool.map(square, tiny)),
        f"dask client.map ({SAMPLE} items)": lambda: per_second(
            SAMPLE, lambda: client_map(square, tiny[:SAMPLE])
        )[0],
    }
    if use_ray:
        variants["plait ray backend"] = lambda: per_second(TINY, lambda: ray_pool.map(square, tiny))
        variants["ray.util Pool"] = lambda: per_second(TINY, lambda: ray_own.map(square, tiny))
    bench.case(f"{TINY} tiny tasks", variants, unit="tasks/s")

    def efficient(fn):
        seconds, out = timed(fn)
        return efficiency(seconds), out

    medium = list(range(MEDIUM))
    variants = {
        "plait dask backend": lambda: efficient(lambda: dask_pool.map(spin, medium)),
        "dask client.map": lambda: efficient(lambda: client_map(spin, medium)),
    }
    if use_ray:
        variants["plait ray backend"] = lambda: efficient(lambda: ray_pool.map(spin, medium))
        variants["ray.util Pool"] = lambda: efficient(lambda: ray_own.map(spin, medium))
    bench.case(f"{MEDIUM} tasks of 10 ms CPU", variants, unit="efficiency")

    dask_pool.terminate()
    if use_ray:
        ray_pool.terminate()
        ray_own.terminate()
        ray.shutdown()
    client.close()
    cluster.close()
    bench.close()


if __name__ == "__main__":
    main()
