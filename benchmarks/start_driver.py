"""Helper of bench_process.py: start+join processes in a small script of its own.

Under spawn and forkserver a child re-imports the parent's ``__main__``; measured from
inside bench_process.py (which imports numpy) that import would dominate. A typical
script is small, so the start-up cases run here, and this file's ``__main__`` is lean.

    python benchmarks/start_driver.py plait|multiprocessing METHOD COUNT
prints the seconds per start+join, after one untimed start (which starts a forkserver).
"""

import sys
import time


def nothing() -> None:
    pass


if __name__ == "__main__":
    impl, method, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if impl == "plait":
        import plait.process as mp
    else:
        import multiprocessing as mp
    ctx = mp.get_context(method)
    p = ctx.Process(target=nothing)
    p.start()
    p.join()
    t0 = time.perf_counter()
    for _ in range(count):
        p = ctx.Process(target=nothing)
        p.start()
        p.join()
        assert p.exitcode == 0, p.exitcode
    print((time.perf_counter() - t0) / count)
