"""The measuring rules of BENCHMARKS.md, in one place every benchmark script uses.

A script makes one ``Bench``, which prints the conditions (Python, cores, load, peer
versions), then calls ``case`` once per thing measured. A case gets its variants as a
dict ``{name: fn}``, the first being plait; each ``fn()`` runs the work once and returns
its figure in the case's unit (or ``(figure, result)``, and then the results of all
variants must be equal: checked after round one, outside the timed region). The variants
run interleaved, round by round, in rotated order, so a slow minute hurts all alike. Each
call is capped by a SIGALRM timer: a variant that overruns is reported "over cap" and
dropped from the later rounds, it never hangs the run (an alarm that comes once the call
has returned, while the timer is being turned off, is void). Before each call the garbage of
the calls before it is collected (``gc.collect``): otherwise a variant that leaves tens of
thousands of objects behind (futures, say) makes the young-generation collections of the
next variant, whoever it is, scan them all, and the next variant pays for the previous one.

``close`` also writes the run as JSON (the format ``plait.bench_report`` reads, named by
its ``format`` field): the conditions, and per case each variant's per-round figures with
their median, min and max, and each peer's per-round ratios with their median, min and max.
It goes to ``benchmarks/results/<bench>.json``, or where ``--json PATH`` says (a file, or a
directory to hold ``<bench>.json``); the harness takes that option off ``sys.argv`` when it
is imported, so each script's own option parsing never sees it. The file is written to a
temporary name and renamed, so a reader never meets half a result.

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

import datetime
import gc
import importlib.metadata
import os
import pathlib
import platform
import signal
import socket
import sys
import time
from collections.abc import Callable

from plait import bench_report as report

__all__ = ["Bench", "OverCap", "rate", "timed"]


class OverCap(Exception):
    """A variant ran past the case's time cap."""


class _Cap:
    """Whether a variant's call is under way: only then does the cap's alarm stop it."""

    armed = False


def _on_alarm(signum, frame):
    # The timer can expire after the variant returned, before it is disarmed: the
    # handler then runs where no ``except OverCap`` would catch it, so it does nothing.
    if _Cap.armed:
        raise OverCap


def _capped(fn: Callable[[], object], cap: float) -> object:
    """``fn()``, or OverCap once it has run ``cap`` seconds; the timer is off after."""
    try:
        _Cap.armed = True
        signal.setitimer(signal.ITIMER_REAL, cap)
        return fn()
    finally:
        _Cap.armed = False  # first: an alarm from here on is void
        signal.setitimer(signal.ITIMER_REAL, 0)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Run ``fn`` once; return (seconds, its result)."""
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def rate(count: int, fn: Callable[[], object]) -> tuple[float, object]:
    """Run ``fn`` once; return (``count`` per second, its result)."""
    seconds, result = timed(fn)
    return count / seconds, result


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _take_json_option(argv: list[str]) -> str | None:
    """Remove ``--json PATH`` (or ``--json=PATH``) from ``argv`` and return PATH."""
    for i, arg in enumerate(argv):
        if arg == "--json":
            if i + 1 == len(argv):
                sys.exit("--json wants a PATH: a file, or a directory to hold <bench>.json")
            path = argv[i + 1]
            del argv[i : i + 2]
            return path
        if arg.startswith("--json="):
            del argv[i]
            return arg.partition("=")[2]
    return None


JSON_OPTION = _take_json_option(sys.argv)
RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def _destination(bench: str, path: str | os.PathLike | None) -> pathlib.Path:
    """Where ``bench``'s JSON goes: ``path`` if it names a .json file, else a directory."""
    path = pathlib.Path(path) if path is not None else RESULTS
    return path if path.suffix == ".json" else path / f"{bench}.json"


class Bench:
    """One benchmark run: prints its conditions now, a table per ``case``, and on
    ``close`` writes the whole run as JSON (see the module docstring for where)."""

    def __init__(
        self,
        title: str,
        packages: list[str] = (),
        rounds: int = 5,
        cap: float = 60.0,
        *,
        name: str | None = None,
        json_path: str | os.PathLike | None = None,
    ) -> None:
        self.rounds = rounds
        self.cap = cap
        self.name = name or pathlib.Path(sys.argv[0]).stem.removeprefix("bench_")
        self.json_path = _destination(self.name, json_path or JSON_OPTION)
        self.title = title
        self.started = _now()
        self.cases: list[report.Case] = []
        self.conditions = report.Conditions(
            python=platform.python_version(),
            implementation=platform.python_implementation(),
            hostname=socket.gethostname(),
            cpu_model=_cpu_model(),
            architecture=platform.machine(),
            cores=len(os.sched_getaffinity(0)),
            cpu_count=os.cpu_count() or 0,
            load_start=_load(),
            load_end=[],
            versions={p: _version(p) for p in ["plait", *packages]},
            rounds=rounds,
            cap=cap,
        )
        c = self.conditions
        print(f"# {title}")
        print(
            f"# Python {c.python} ({c.implementation}), {c.cores} cores usable "
            f"(os.cpu_count() = {c.cpu_count}), {c.architecture}, {c.cpu_model} on "
            f"{c.hostname}, load average at start {report.format_load(c.load_start)}"
        )
        print(f"# versions: {', '.join(f'{p} {v}' for p, v in c.versions.items())}")
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
                    try:
                        out = _capped(variants[n], cap)
                    except OverCap:
                        notes[n] = f"over cap ({cap:g} s)"
                        figures[n].append(None)
                        continue
                    except Exception as exc:
                        notes[n] = f"failed: {type(exc).__name__}: {exc}"[:80]
                        figures[n].append(None)
                        continue
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
        case = _case(name, names, figures, notes, unit, higher_is_better)
        self.cases.append(case)
        _print_table(case)
        return {n: [f for f in figures[n] if f is not None] for n in names}

    def close(self) -> None:
        """Print the ratio summary and the load average at the end; write the JSON."""
        summary = [(case.name, r) for case in self.cases for r in case.ratios]
        if summary:
            print("\nsummary (plait x peer, median of per-round ratios):")
            for name, r in summary:
                print(f"  {name:<44} vs {r.peer:<26} {r.median:6.2f}")
        self.conditions.load_end = _load()
        print(f"\n# load average at end {report.format_load(self.conditions.load_end)}")
        run = report.Run(
            bench=self.name,
            title=self.title,
            command=sys.argv[1:],
            started=self.started,
            finished=_now(),
            conditions=self.conditions,
            cases=self.cases,
        )
        report.dump(run, self.json_path)
        print(f"# results written to {self.json_path}")
        sys.stdout.flush()


def _case(name, names, figures, notes, unit, higher_is_better) -> report.Case:
    """The record of one measured case: each variant's figures, plait's per-round ratios."""
    base = figures[names[0]]
    variants = [report.Variant.measured(n, figures[n], notes.get(n)) for n in names]
    ratios = []
    for v in variants[1:]:
        if v.shown is None:
            continue
        per_round = [
            (b / p if higher_is_better else p / b)
            for b, p in zip(base, v.figures, strict=True)
            if b is not None and p is not None and b > 0 and p > 0
        ]
        if per_round:
            ratios.append(report.Ratio.of_rounds(v.name, per_round))
    return report.Case(name, unit, higher_is_better, variants, ratios)


def _print_table(case: report.Case) -> None:
    better = "higher" if case.higher_is_better else "lower"
    print(f"\n{case.name}  [{case.unit}, {better} is better]")
    print(f"  {'variant':<28}{'median':>12}{'min-max':>22}{'plait x':>10}{'range':>16}")
    for row in report.table_rows(case):
        if not row.spread:
            print(f"  {row.variant:<28}{row.median}")
        else:
            print(
                f"  {row.variant:<28}{row.median:>12}{row.spread:>22}"
                f"{row.ratio:>10}{row.ratio_range:>16}"
            )
    sys.stdout.flush()


def _equal(a: object, b: object) -> bool:
    try:
        eq = a == b
        if hasattr(eq, "all"):  # numpy arrays compare elementwise
            return bool(eq.all())
        return bool(eq)
    except Exception:
        return False
