"""Processes under the three start methods: exit codes, signals, lambdas, daemons.

Run: python examples/process_start_methods.py

Every child reports through its exit code, so the example needs nothing but the
process layer. The ``if __name__ == "__main__":`` guard matters: under spawn and
forkserver the child re-runs this file as ``__mp_main__`` to find ``square``.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import plait.process


def square(x: int) -> None:
    """Report x*x through the exit code."""
    sys.exit(x * x)


def sleep_forever() -> None:
    time.sleep(3600)


def main() -> int:
    print(f"cpu_count() = {plait.process.cpu_count()} (os.cpu_count() = {os.cpu_count()})")
    for method in plait.process.get_all_start_methods():
        ctx = plait.process.get_context(method)
        t0 = time.perf_counter()
        p = ctx.Process(target=square, args=(7,))
        p.start()
        p.join(timeout=30)
        took = (time.perf_counter() - t0) * 1e3
        print(f"{method:>10}: square(7) -> exit code {p.exitcode} in {took:.1f} ms")

        # A lambda: plain pickle refuses it, cloudpickle carries it to spawned children.
        q = ctx.Process(target=lambda n=len(method): sys.exit(n))
        q.start()
        q.join(timeout=30)
        print(f"{'':>10}  a lambda target -> exit code {q.exitcode}")

        d = ctx.Process(target=sleep_forever, daemon=True)
        d.start()
        d.join(timeout=0.1)
        print(f"{'':>10}  daemon alive after join(0.1): {d.is_alive()}")
        d.terminate()
        d.join(timeout=30)
        assert d.exitcode == -signal.SIGTERM
        print(f"{'':>10}  terminated -> {d!r}")
        for proc in (p, q, d):
            proc.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
