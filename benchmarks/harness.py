"""The measuring rules of BENCHMARKS.md, in one place every benchmark script uses.

A script makes one ``Bench``, which prints the conditions (Python, cores, load, peer
versions), then calls ``case`` once per thing measured. A case gets its variants as a
dict ``{name: fn}``, the first being plait; each ``fn()`` runs the work once and returns
its figure in the case's unit (or ``(figure, result)``, and then the results of all
variants must be equal: checked after round one, outside the timed region). The variants
run interleaved, round by round, in rotated order, so a slow minute hurts all alike. Each
call is capped by a SIGALRM timer: a variant that overruns is reported "over cap" and
dropped from the later rounds, it never hangs the run. Before each call the garbage of
the calls before it is collected (``gc.collect``): otherwise a variant that leaves tens of
thousands of objects behind (futures, say) makes the young-generation collections of the
next variant, whoever it is, scan them all, and the next variant pays for the previous one.

The table prints each variant's median, the min-max spread, and "plait x": per round,
how many times better plait did than that variant (plait / peer for rates, peer / plait
for times), and the median of those per-round ratios. Above 1 means plait is ahead; a
spread that straddles 1 means no difference.

    bench = Bench("pipes", packages=["numpy"])
    bench.case("ping-pong", {"plait": run_plait, "multiprocessing": run_std},
               unit="round trips/s")
    bench.close()
"""

from __future__ import annotations

import gc
import importlib.metadata
import os
import platform
import signal
import statistics
import sys
import time
from collections.abc import Callable

__all__ = ["Bench", "OverCap", "rate", "timed"]


class OverCap(Exception):
    """A variant ran past the case's time cap."""


def _on_alarm(signum, frame):
    raise OverCap


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Run ``fn`` once; return (seconds, its result)."""
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def rate(count: int, fn: Callable[[], object]) -> tuple[float, object]:
    """Run ``fn`` once; return (``count`` per second, its result)."""
    seconds, result = timed(fn)
    return count / seconds, result


def _fmt(value: float, unit: str) -> str:
    if unit in ("s", "seconds"):
        for scale, suffix in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
            if value >= scale:
                return f"{value / scale:.3g} {suffix}"
        return f"{value * 1e9:.3g} ns"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class Bench:
    """One benchmark run: prints its conditions now, a table per ``case``."""

    def __init__(
        self,
        title: str,
        packages: list[str] = (),
        rounds: int = 5,
        cap: float = 60.0,
    ) -> None:
        self.rounds = rounds
        self.cap = cap
        self.summary: list[tuple[str, str, float]] = []
        cores = len(os.sched_getaffinity(0))
        print(f"# {title}")
        print(
            f"# Python {platform.python_version()} ({platform.python_implementation()}), "
            f"{cores} cores usable (os.cpu_count() = {os.cpu_count()}), "
            f"{platform.machine()}, load average at start {_load()}"
        )
        versions = ", ".join(f"{p} {_version(p)}" for p in ["plait", *packages])
        print(f"# versions: {versions}")
        print(f"# {rounds} rounds each, interleaved and rotated; cap {cap:g} s per call")
        print("# 'plait x' = how many times better plait did (per-round ratios: median, range)")
        sys.stdout.flush()

    def case(
        self,
        name: str,
        variants: dict[str, Callable[[], float | tuple[float, object]]],
        unit: str = "ops/s",
        higher_is_better: bool = True,
        rounds: int | None = None,
        cap: float | None = None,
    ) -> dict[str, list[float]]:
        """Measure ``variants`` side by side; print and return their figures per round."""
        rounds = rounds or self.rounds
        cap = cap or self.cap
        names = list(variants)
        figures: dict[str, list[float | None]] = {n: [] for n in names}
        results: dict[str, object] = {}
        notes: dict[str, str] = {}
        old = signal.signal(signal.SIGALRM, _on_alarm)
        try:
            for r in range(rounds):
                order = names[r % len(names) :] + names[: r % len(names)]
                for n in order:
                    if n in notes:
                        figures[n].append(None)
                        continue
                    gc.collect()
                    signal.setitimer(signal.ITIMER_REAL, cap)
                    try:
                        out = variants[n]()
                    except OverCap:
                        notes[n] = f"over cap ({cap:g} s)"
                        figures[n].append(None)
                        continue
                    except Exception as exc:
                        notes[n] = f"failed: {type(exc).__name__}: {exc}"[:80]
                        figures[n].append(None)
                        continue
                    finally:
                        signal.setitimer(signal.ITIMER_REAL, 0)
                    if isinstance(out, tuple):
                        out, result = out
                        if r == 0:
                            results[n] = result
                    figures[n].append(float(out))
                if r == 0 and len(results) > 1:
                    first = next(iter(results.values()))
                    for n, res in results.items():
                        if not _equal(res, first):
                            notes[n] = "WRONG RESULT (differs from the first variant)"
        finally:
            signal.signal(signal.SIGALRM, old)
        self._table(name, names, figures, notes, unit, higher_is_better)
        return {n: [f for f in figures[n] if f is not None] for n in names}

    def _table(self, name, names, figures, notes, unit, higher_is_better) -> None:
        better = "higher" if higher_is_better else "lower"
        print(f"\n{name}  [{unit}, {better} is better]")
        print(f"  {'variant':<28}{'median':>12}{'min-max':>22}{'plait x':>10}{'range':>16}")
        base = names[0]
        for n in names:
            vals = [f for f in figures[n] if f is not None]
            if n in notes or not vals:
                print(f"  {n:<28}{notes.get(n, 'no figure')}")
                continue
            med = statistics.median(vals)
            spread = f"{_fmt(min(vals), unit)}-{_fmt(max(vals), unit)}"
            ratios = [
                (b / v if higher_is_better else v / b)
                for b, v in zip(figures[base], figures[n], strict=True)
                if b is not None and v is not None and b > 0 and v > 0
            ]
            if ratios and n != base:
                rmed = statistics.median(ratios)
                self.summary.append((name, n, rmed))
                rtxt = f"{rmed:>10.2f}{f'{min(ratios):.2f}-{max(ratios):.2f}':>16}"
            else:
                rtxt = f"{'':>10}{'':>16}"
            print(f"  {n:<28}{_fmt(med, unit):>12}{spread:>22}{rtxt}")
        sys.stdout.flush()

    def close(self) -> None:
        """Print the ratio summary and the load average at the end."""
        if self.summary:
            print("\nsummary (plait x peer, median of per-round ratios):")
            for case, peer, r in self.summary:
                print(f"  {case:<44} vs {peer:<26} {r:6.2f}")
        print(f"\n# load average at end {_load()}")
        sys.stdout.flush()


def _equal(a: object, b: object) -> bool:
    try:
        eq = a == b
        if hasattr(eq, "all"):  # numpy arrays compare elementwise
            return bool(eq.all())
        return bool(eq)
    except Exception:
        return False
