"""``python -m plait demo`` tours what works; ``python -m plait bench`` runs the benchmarks."""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import time


def _section(title: str):
    print(f"\n== {title}")
    return time.perf_counter()


def _done(t0: float, what: str) -> None:
    print(f"   {what} in {(time.perf_counter() - t0) * 1e3:.1f} ms")


def demo_serialization() -> None:
    from plait._core import serialization

    t0 = _section("serialization: pickle 5, cloudpickle when pickle refuses")
    offset = 10
    f = serialization.loads(serialization.dumps(lambda x: x + offset))
    print(f"   a closure pickled and rebuilt: f(32) = {f(32)}")
    _done(t0, "done")


DEMOS = [demo_serialization]


def demo() -> int:
    print(f"plait demo on Python {sys.version.split()[0]}, {len(os.sched_getaffinity(0))} cores")
    t0 = time.perf_counter()
    for section in DEMOS:
        section()
    print(f"\nthe whole tour took {(time.perf_counter() - t0):.2f} s")
    return 0


def bench(names: list[str]) -> int:
    here = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
    scripts = sorted(here.glob("bench_*.py"))
    if names:
        scripts = [s for s in scripts if any(n in s.stem for n in names)]
    if not scripts:
        print(f"no benchmarks found under {here}", file=sys.stderr)
        return 1
    status = 0
    for script in scripts:
        print(f"\n### {script.name}", flush=True)
        status |= subprocess.call([sys.executable, str(script)])
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plait")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="a short tour that runs real work through plait")
    b = sub.add_parser("bench", help="run the benchmarks (needs the bench extra)")
    b.add_argument("names", nargs="*", help="only the benchmarks whose name contains these")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo()
    return bench(args.names)


if __name__ == "__main__":
    sys.exit(main())
