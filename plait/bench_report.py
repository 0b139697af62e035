"""Benchmark results as data: the JSON format the benchmarks write, and the charts and
``report.md`` that ``python -m plait bench --report DIR`` makes from it.

The format is one JSON object per benchmark script run. Its ``format`` field, ``FORMAT``
("plait-bench/<version>"), says it is ours and which version; the reader takes its own
version only, and names the file and the cause when it meets anything else (not JSON,
not ours, an older or a newer version), so a stale recording is never drawn as if it were
current. The records below are the format: ``Run`` holds the conditions of the run
(Python, cores, load at start and end, peer versions, host and CPU model) and its
``Case`` list; a case holds each ``Variant``'s per-round figures with their median, min
and max (the first variant is plait), and for each peer a ``Ratio``: per round, how many
times better plait did than that peer, with the median, min and max of those ratios.
``benchmarks/harness.py`` builds these records and ``dump`` writes them; ``load`` reads
and checks them, meaning as well as shape: figures are finite, ratios positive, each
ratio's peer is a variant of its case, a load average is three numbers. A round where a
variant gave no figure (over its cap, failed) is ``null`` in ``figures``, and the
variant's ``note`` says why.

The report never runs a benchmark: it reads ``DIR/*.json`` alone. It checks every file
and that matplotlib can be imported before it writes anything, builds ``charts/`` (one
PNG and one SVG per benchmark) and ``report.md`` in a temporary directory inside DIR,
and only when all of it is complete moves them into place, so a failure leaves DIR as it
was. The SVG files are byte-for-byte reproducible (fixed id salt, no date in the
metadata): re-running the report on the same JSON changes no file. An optional
``DIR/NOTE.md`` opens the report: what the JSON cannot know, such as who else was using
the machine while it was recorded.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import pathlib
import re
import shutil
import statistics
import tempfile
import textwrap
from typing import Any

__all__ = [
    "FORMAT",
    "Case",
    "Conditions",
    "Ratio",
    "ReportError",
    "Row",
    "Run",
    "Variant",
    "dump",
    "format_figure",
    "format_load",
    "load",
    "table_rows",
    "write_report",
]

_PREFIX = "plait-bench/"
_VERSION = 1
FORMAT = f"{_PREFIX}{_VERSION}"


class ReportError(Exception):
    """Benchmark results that cannot be reported: names the file (if any) and the cause."""

    def __init__(self, cause: str, path: os.PathLike | str | None = None) -> None:
        self.path = path
        self.cause = cause
        super().__init__(f"{path}: {cause}" if path is not None else cause)


def format_figure(value: float, unit: str) -> str:
    """``value`` short, with an SI prefix: '1.23M', '45.6 ms' (seconds get a time unit)."""
    if unit in ("s", "seconds"):
        for scale, suffix in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
            if value >= scale:
                return f"{value / scale:.3g} {suffix}"
        return f"{value * 1e9:.3g} ns"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


@dataclasses.dataclass(slots=True)
class Conditions:
    """The machine and the moment a benchmark ran on: what its table's header prints."""

    python: str
    implementation: str
    hostname: str
    cpu_model: str
    architecture: str
    cores: int  # usable by this process (affinity mask)
    cpu_count: int
    load_start: list[float]  # load average (1, 5, 15 min) when the run started
    load_end: list[float]
    versions: dict[str, str]  # plait and the peers: package -> version
    rounds: int
    cap: float  # seconds a single call may take

    def caption(self) -> str:
        """One line for a chart or a report: the machine, its load, the versions."""
        versions = ", ".join(f"{p} {v}" for p, v in self.versions.items())
        return (
            f"{self.hostname} ({self.cpu_model}, {self.architecture}), {self.cores} cores "
            f"usable of {self.cpu_count}; {self.implementation} {self.python}; load average "
            f"{format_load(self.load_start)} at start, {format_load(self.load_end)} at end; "
            f"{versions}"
        )


@dataclasses.dataclass(slots=True)
class Variant:
    """One contender of a case: its figure per round (None: none that round) and why."""

    name: str
    figures: list[float | None]
    median: float | None
    min: float | None
    max: float | None
    note: str | None = None  # why it has rounds without a figure: over cap, failed, ...

    @property
    def shown(self) -> tuple[float, float, float] | None:
        """(median, min, max) to show, or None: the variant has a note or no figure."""
        if self.note is not None or self.median is None or self.min is None or self.max is None:
            return None
        return self.median, self.min, self.max

    @classmethod
    def measured(cls, name: str, figures: list[float | None], note: str | None) -> Variant:
        got = [f for f in figures if f is not None]
        if not got:
            return cls(name, figures, None, None, None, note)
        return cls(name, figures, statistics.median(got), min(got), max(got), note)


@dataclasses.dataclass(slots=True)
class Ratio:
    """How many times better plait did than ``peer``: per round, and their spread."""

    peer: str
    per_round: list[float]
    median: float
    min: float
    max: float

    @classmethod
    def of_rounds(cls, peer: str, per_round: list[float]) -> Ratio:
        return cls(peer, per_round, statistics.median(per_round), min(per_round), max(per_round))


@dataclasses.dataclass(slots=True)
class Case:
    """One thing measured: the variants side by side (plait first) and plait's ratios."""

    name: str
    unit: str
    higher_is_better: bool
    variants: list[Variant]
    ratios: list[Ratio]  # one per peer that has figures in the rounds plait has them


@dataclasses.dataclass(slots=True)
class Run:
    """One run of one benchmark script."""

    bench: str  # the script's name without "bench_": "ipc" for bench_ipc.py
    title: str
    command: list[str]  # the script's arguments: ["--quick"]
    started: str  # ISO 8601, UTC
    finished: str
    conditions: Conditions
    cases: list[Case]
    format: str = FORMAT

    def period(self) -> str:
        """When it ran: '2026-12-02 20:48:19 to 20:53:53 UTC'."""
        started, finished = _when(self.started), _when(self.finished)
        if started[:10] == finished[:10]:  # the same day: the date and the zone once
            return f"{started.removesuffix(' UTC')} to {finished[11:]}"
        return f"{started} to {finished}"

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {"format": data.pop("format"), **data}


def _when(iso: str) -> str:
    """An ISO 8601 UTC time for a reader: '2026-12-02 20:48:19 UTC'."""
    when = datetime.datetime.fromisoformat(iso).astimezone(datetime.timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def dump(run: Run, path: os.PathLike | str) -> None:
    """Write ``run`` to ``path`` as JSON, atomically (a temporary file renamed over it)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would keep the results from other readers
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(run.to_json(), f, indent=1, ensure_ascii=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load(path: os.PathLike | str) -> Run:
    """Read one result file; raise ``ReportError`` naming it if it is not our format."""
    path = pathlib.Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ReportError(f"not JSON (not UTF-8 text: {exc.reason})", path) from None
    except json.JSONDecodeError as exc:
        raise ReportError(f"not JSON ({exc})", path) from None
    except OSError as exc:
        raise ReportError(f"cannot be read ({exc.strerror})", path) from None
    fmt = data.get("format") if isinstance(data, dict) else None
    if not isinstance(fmt, str) or not fmt.startswith(_PREFIX):
        raise ReportError(f"not plait benchmark results (no 'format': '{FORMAT}' field)", path)
    version = fmt[len(_PREFIX) :]
    if version != str(_VERSION):
        age = "an older" if version.isdigit() and int(version) < _VERSION else "an unknown"
        raise ReportError(
            f"results in {age} format ({fmt!r}); this plait reads {FORMAT!r} only: "
            "run the benchmark again to record it in this format",
            path,
        )
    try:
        return _run(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ReportError(f"malformed {FORMAT} results: {exc}", path) from None


def _fields(data: object, cls: type, where: str) -> dict[str, Any]:
    """The values of ``cls``'s fields in the JSON object ``data``; TypeError if absent."""
    if not isinstance(data, dict):
        raise TypeError(f"{where} should be an object, not {type(data).__name__}")
    values = {}
    for field in dataclasses.fields(cls):
        if field.name in data:
            values[field.name] = data[field.name]
        elif field.default is dataclasses.MISSING:
            raise TypeError(f"{where} has no {field.name!r}")
    return values


def _number(value: object, where: str, none: bool = False, positive: bool = False) -> float | None:
    """``value`` as a finite float (> 0 if ``positive``; None allowed if ``none``)."""
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{where} should be a number, not {value!r}")
    if not math.isfinite(value) or (positive and value <= 0):
        raise ValueError(
            f"{where} should be a {'positive' if positive else 'finite'} number, not {value!r}"
        )
    return float(value)


def _of_type(value: object, kind: type, where: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{where} should be {kind.__name__}, not {value!r}")
    return value


def _conditions(data: object) -> Conditions:
    fields = _fields(data, Conditions, "'conditions'")
    for key in ("python", "implementation", "hostname", "cpu_model", "architecture"):
        _of_type(fields[key], str, f"'conditions' {key!r}")
    for key in ("cores", "cpu_count", "rounds"):
        _of_type(fields[key], int, f"'conditions' {key!r}")
    _number(fields["cap"], "'conditions' 'cap'")
    for key in ("load_start", "load_end"):
        where = f"'conditions' {key!r} (the load averages over 1, 5 and 15 minutes)"
        loads = _list(fields[key], where)
        if len(loads) != 3:
            raise ValueError(f"{where} should hold 3 numbers, not {len(loads)}")
        fields[key] = [_number(x, where) for x in loads]
    versions = fields["versions"]
    if not isinstance(versions, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in versions.items()
    ):
        raise TypeError(
            f"'conditions' 'versions' should map package names to versions (strings), "
            f"not {versions!r}"
        )
    return Conditions(**fields)


def _list(value: object, where: str) -> list:
    if not isinstance(value, list):
        raise TypeError(f"{where} should be a list, not {type(value).__name__}")
    return value


def _run(data: dict) -> Run:
    run = _fields(data, Run, "the file")
    if not isinstance(run["bench"], str) or not re.fullmatch(r"\w[\w.-]*", run["bench"]):
        raise ValueError(f"'bench' should name a file of charts/, not {run['bench']!r}")
    for key in ("started", "finished"):
        try:
            _when(run[key])
        except (TypeError, ValueError):
            raise ValueError(f"{key!r} is not an ISO 8601 time: {run[key]!r}") from None
    run["conditions"] = _conditions(run["conditions"])
    cases = []
    for i, item in enumerate(_list(run["cases"], "'cases'")):
        case = _fields(item, Case, f"case {i}")
        where = f"case {case['name']!r}"
        variants = []
        for v in _list(case["variants"], f"{where} 'variants'"):
            variant = _fields(v, Variant, f"a variant of {where}")
            at = f"variant {variant['name']!r} of {where}"
            _of_type(variant["name"], str, f"the name of {at}")
            variant["figures"] = [_number(f, at, none=True) for f in _list(variant["figures"], at)]
            for key in ("median", "min", "max"):
                variant[key] = _number(variant[key], f"{at} {key!r}", none=True)
            variants.append(Variant(**variant))
        if not variants:
            raise ValueError(f"{where} has no variants")
        peers = [v.name for v in variants[1:]]  # the first is plait
        ratios = []
        for r in _list(case["ratios"], f"{where} 'ratios'"):
            ratio = _fields(r, Ratio, f"a ratio of {where}")
            at = f"ratio to {ratio['peer']!r} of {where}"
            if ratio["peer"] not in peers:
                raise ValueError(f"{at}: no such peer among its variants {peers}")
            per_round = _list(ratio["per_round"], at)
            ratio["per_round"] = [_number(f, at, positive=True) for f in per_round]
            for key in ("median", "min", "max"):
                ratio[key] = _number(ratio[key], f"{at} {key!r}", positive=True)
            ratios.append(Ratio(**ratio))
        case["variants"], case["ratios"] = variants, ratios
        cases.append(Case(**case))
    run["cases"] = cases
    return Run(**run)


def format_load(values: list[float]) -> str:
    """A load average triple as the harness prints it: '1.20 0.80 0.50'."""
    return " ".join(f"{x:.2f}" for x in values)


@dataclasses.dataclass(slots=True)
class Row:
    """One line of a case's table, as text: what the benchmark prints and report.md shows."""

    variant: str
    median: str  # the figure, or the note when the variant has none
    spread: str
    ratio: str
    ratio_range: str


def table_rows(case: Case) -> list[Row]:
    """The rows of ``case``'s table: each variant's median and min-max, plait's ratio."""
    ratios = {r.peer: r for r in case.ratios}
    rows = []
    for v in case.variants:
        if v.shown is None:
            rows.append(Row(v.name, v.note or "no figure", "", "", ""))
            continue
        median, low, high = v.shown
        spread = f"{format_figure(low, case.unit)}-{format_figure(high, case.unit)}"
        r = ratios.get(v.name)
        ratio, ratio_range = (
            ("", "") if r is None else (f"{r.median:.2f}", f"{r.min:.2f}-{r.max:.2f}")
        )
        rows.append(Row(v.name, format_figure(median, case.unit), spread, ratio, ratio_range))
    return rows


# The charts. Each benchmark gets one figure: a row per case, the figures of the variants
# on the left (the median as a bar, the min-max of the rounds as an error bar, plait in its
# own colour), plait's ratio to each peer on the right (the median as a dot, the min-max of
# the per-round ratios as an error bar, on a log scale around the line at 1, so 2x ahead
# and 2x behind are the same distance from it). The caption is the machine's conditions.

_PLAIT, _PEER, _RATIO = "#2b6cb0", "#a0aec0", "#c05621"
_RATIO_TICKS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
_DECADES = [0.01, 0.1, 1, 10, 100, 1000]
_SVG_SALT = "plait-bench-report"  # fixed: the SVG ids, hence the files, do not change


def _matplotlib():
    """matplotlib's ``Figure`` (rendered by Agg for PNG), or ReportError if it is absent."""
    try:
        import matplotlib  # noqa: PLC0415 - only the report needs it
        from matplotlib.figure import Figure  # noqa: PLC0415
    except ImportError as exc:
        raise ReportError(
            f"the charts need matplotlib, which cannot be imported ({exc}): "
            "pip install 'plait[docs]'"
        ) from None
    return matplotlib, Figure


def _chart(run: Run, figure: type):
    """The figure of one run: a row per case, variants left, plait's ratios right."""
    heights = [max(1.4, 0.36 * len(case.variants) + 0.8) for case in run.cases]
    fig = figure(figsize=(12, sum(heights) + 1.4), layout="constrained")
    axes = fig.subplots(
        len(run.cases), 2, squeeze=False, height_ratios=heights, width_ratios=[3, 2]
    )
    for (left, right), case in zip(axes, run.cases, strict=True):
        _figures(left, case)
        _ratios(right, case)
    fig.suptitle(f"{run.title}  (bench_{run.bench}.py {' '.join(run.command)})".strip())
    caption = f"Recorded {run.period()} on {run.conditions.caption()}"
    fig.supxlabel("\n".join(textwrap.wrap(caption, 160)), fontsize=7)
    return fig


def _figures(ax, case: Case) -> None:
    """The variants' figures: the median as a bar, the rounds' min-max as an error bar."""
    shown = [v.shown or (0.0, 0.0, 0.0) for v in case.variants]  # a note: no bar
    medians = [median for median, _, _ in shown]
    low = [median - lo for median, lo, _ in shown]
    high = [hi - median for median, _, hi in shown]
    ys = range(len(case.variants))
    colours = [_PLAIT] + [_PEER] * (len(case.variants) - 1)
    ax.barh(ys, medians, xerr=[low, high], color=colours, capsize=3)
    for y, v in zip(ys, case.variants, strict=True):
        if v.shown is None:
            note = textwrap.shorten(v.note or "no figure", 70)
            ax.text(0, y, f" {note}", va="center", fontsize=7)
    names = ["\n".join(textwrap.wrap(v.name, 30)) for v in case.variants]
    ax.set_yticks(list(ys), names, fontsize=8)
    ax.set_ylim(len(case.variants) - 0.5, -0.5)
    ax.xaxis.set_major_formatter(lambda x, _: format_figure(x, case.unit) if x > 0 else "0")
    better = "higher" if case.higher_is_better else "lower"
    ax.set_xlabel(f"{case.unit}, {better} is better (bar: median; line: min-max)", fontsize=8)
    ax.set_title(case.name, fontsize=10, loc="left")
    ax.tick_params(axis="x", labelsize=8)


def _ratios(ax, case: Case) -> None:
    """plait's ratio to each peer, on the peer's row: the median dot, the per-round
    min-max, the line at 1."""
    rows = len(case.variants)
    ax.set_ylim(rows - 0.5, -0.5)
    ax.tick_params(axis="y", left=False, labelleft=False)
    if not case.ratios:
        ax.text(
            0.5,
            0.5,
            "no ratios (plait or the peers have no figures)",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=8,
        )
        ax.set_xticks([])
        return
    ax.axvline(1, color="black", linewidth=0.8)
    ax.set_xscale("log")
    row = {v.name: y for y, v in enumerate(case.variants)}
    ys = [row[r.peer] for r in case.ratios]
    med = [r.median for r in case.ratios]
    err = [[r.median - r.min for r in case.ratios], [r.max - r.median for r in case.ratios]]
    ax.errorbar(med, ys, xerr=err, fmt="o", color=_RATIO, capsize=3)
    for y, r in zip(ys, case.ratios, strict=True):
        ax.annotate(
            f"{r.median:.2f}",
            (r.median, y),
            textcoords="offset points",
            xytext=(0, 4),
            ha="center",
            fontsize=7,
        )
    lo = min(0.5, min(r.min for r in case.ratios) / 1.5)
    hi = max(2.0, max(r.max for r in case.ratios) * 1.5)
    ax.set_xlim(lo, hi)
    ticks = _RATIO_TICKS if hi / lo < 100 else _DECADES  # 1-2-5 would crowd a wide axis
    ax.set_xticks([t for t in ticks if lo <= t <= hi])
    ax.xaxis.set_major_formatter("{x:g}")
    ax.xaxis.set_minor_formatter("")
    ax.set_xlabel("plait x peer, above 1: plait ahead (dot: median; line: min-max)", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)


def _markdown(runs: list[Run], note: str | None) -> str:
    """report.md: what was recorded where and when, then a section per benchmark."""
    first = _when(min(run.started for run in runs))
    last = _when(max(run.finished for run in runs))
    machines = sorted({run.conditions.hostname + f" ({run.conditions.cpu_model})" for run in runs})
    lines = [
        "# Benchmark report: a recording",
        "",
        f"These figures are a **recording**, made from {first} to {last} on "
        f"{', '.join(machines)}; they are not measured when you read them. Each benchmark's "
        "conditions (Python, cores, load average at its start and end, package versions) are "
        "in its section and in its chart's caption. To record your own: "
        "`python benchmarks/bench_<name>.py [--quick] --json DIR`, then "
        "`python -m plait bench --report DIR`.",
        "",
    ]
    if note:
        lines += [note.strip(), ""]
    for run in runs:
        c = run.conditions
        command = " ".join([f"benchmarks/bench_{run.bench}.py", *run.command])
        lines += [
            f"## {run.title}",
            "",
            f"`{command}`, recorded {run.period()}. {c.caption()}. "
            f"{c.rounds} rounds per case, interleaved and rotated; cap {c.cap:g} s per call. "
            "'plait x' is how many times better plait did than the peer: the median of the "
            "per-round ratios, and their range; above 1 plait is ahead, a range that "
            "straddles 1 means no difference.",
            "",
            f"![{run.title}](charts/{run.bench}.svg)",
            "",
        ]
        for case in run.cases:
            better = "higher" if case.higher_is_better else "lower"
            lines += [
                f"### {case.name}",
                "",
                f"Unit: {case.unit}; {better} is better.",
                "",
                "| variant | median | min-max | plait x | range |",
                "|---|---:|---:|---:|---:|",
            ]
            for row in table_rows(case):
                cells = [row.variant, row.median, row.spread, row.ratio, row.ratio_range]
                lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
            lines.append("")
    return "\n".join(lines)


def write_report(directory: os.PathLike | str) -> list[pathlib.Path]:
    """Make ``charts/`` and ``report.md`` in ``directory`` from its ``*.json``; return them.

    Raises ReportError, with nothing written, if the directory holds no results, any file
    is not ours or of another format version, or matplotlib is missing.
    """
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise ReportError("no such directory", directory)
    paths = sorted(directory.glob("*.json"))
    if not paths:
        raise ReportError("no benchmark results (*.json) in this directory", directory)
    runs = [load(path) for path in paths]
    for path, run in zip(paths, runs, strict=True):
        if not run.cases:
            raise ReportError("results without a single case", path)
    names = [run.bench for run in runs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ReportError(f"more than one result file for the benchmark(s) {twice}", directory)
    matplotlib, figure = _matplotlib()
    note_path = directory / "NOTE.md"
    note = note_path.read_text(encoding="utf-8") if note_path.exists() else None
    try:
        work = pathlib.Path(tempfile.mkdtemp(prefix=".report-", dir=directory))
    except OSError as exc:
        raise ReportError(f"cannot write the report here ({exc.strerror})", directory) from None
    try:
        charts = work / "charts"
        charts.mkdir()
        rc = {"svg.hashsalt": _SVG_SALT, "svg.fonttype": "none"}
        with matplotlib.rc_context(rc):
            for run in runs:
                fig = _chart(run, figure)
                fig.savefig(charts / f"{run.bench}.svg", metadata={"Date": None})
                fig.savefig(charts / f"{run.bench}.png", dpi=100)
        (work / "report.md").write_text(_markdown(runs, note), encoding="utf-8")
        _move_into_place(work, directory)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    made = sorted((directory / "charts").iterdir())
    return [directory / "report.md", *made]


def _move_into_place(work: pathlib.Path, directory: pathlib.Path) -> None:
    """Swap the finished ``charts/`` and ``report.md`` in ``work`` for those in ``directory``:
    all of them, or, if a step fails or is interrupted (Ctrl-C), none.

    Two renames swap the charts, so for a moment ``directory`` has none and the old ones
    are in ``work``, which the caller then removes: on the way out of a failure the
    files themselves say which steps were done, and those are undone.
    """
    charts, new, kept = directory / "charts", work / "charts", work / "old-charts"
    try:
        if charts.exists():
            charts.rename(kept)
        new.rename(charts)
        os.replace(work / "report.md", directory / "report.md")
    except BaseException:
        if not new.exists() and charts.exists():  # the new charts went in: take them out
            charts.rename(new)
        if kept.exists():
            kept.rename(charts)
        raise
