"""The benchmark results as JSON and ``python -m plait bench --report``: a tiny benchmark
measured for real writes its JSON, the report draws its charts and report.md from it, and
every kind of bad input is refused with the file and the cause named and nothing written.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import sys

import pytest

from plait import bench_report
from plait.__main__ import main
from tests.support import run_python

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import harness  # noqa: E402 - benchmarks/ is not a package: found through sys.path

try:
    import matplotlib  # noqa: F401
except ImportError:  # the docs extra is not installed (the non-default venvs of test-all)
    matplotlib = None
needs_matplotlib = pytest.mark.skipif(
    matplotlib is None, reason="drawing charts needs matplotlib (the docs extra)"
)

# The harness times its calls with SIGALRM, the timer pytest-timeout's signal method uses.
pytestmark = pytest.mark.timeout(120, method="thread")


def squares(n: int) -> int:
    return sum(i * i for i in range(n))


def broken() -> float:
    raise RuntimeError("this variant always fails")


def tiny_bench(name: str, json_path: pathlib.Path) -> None:
    """A real benchmark, small: two cases, real timings, one variant that fails."""
    bench = harness.Bench(f"tiny {name}", rounds=3, cap=30, name=name, json_path=json_path)
    bench.case(
        "sum of squares, rate",
        {
            "plait-ish generator": lambda: harness.rate(2000, lambda: squares(2000)),
            "list comprehension": lambda: harness.rate(
                2000, lambda: sum([i * i for i in range(2000)])
            ),
            "always fails": broken,
        },
        unit="items/s",
    )
    bench.case(
        "sum of squares, time",
        {
            "generator": lambda: harness.timed(lambda: squares(5000)),
            "map": lambda: harness.timed(lambda: sum(map(lambda i: i * i, range(5000)))),
        },
        unit="s",
        higher_is_better=False,
    )
    bench.close()


@pytest.fixture
def results(tmp_path: pathlib.Path) -> pathlib.Path:
    """A directory holding the JSON of two tiny benchmarks, measured for real."""
    directory = tmp_path / "results"
    tiny_bench("first", directory)
    tiny_bench("second", directory / "second.json")
    return directory


def snapshot(directory: pathlib.Path) -> dict[str, bytes]:
    """Every file under ``directory``, by relative path, with its bytes."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_the_bench_writes_its_run_as_json(results):
    assert sorted(p.name for p in results.iterdir()) == ["first.json", "second.json"]
    data = json.loads((results / "first.json").read_text())
    assert data["format"] == bench_report.FORMAT
    assert data["bench"] == "first"
    conditions = data["conditions"]
    assert conditions["cores"] >= 1 and len(conditions["load_start"]) == 3
    assert conditions["versions"]["plait"] != "not installed"
    rate, time = data["cases"]
    assert [v["name"] for v in rate["variants"]] == [
        "plait-ish generator",
        "list comprehension",
        "always fails",
    ]
    plait, peer, failed = rate["variants"]
    assert len(plait["figures"]) == 3 and plait["min"] <= plait["median"] <= plait["max"]
    assert failed["figures"] == [None, None, None]
    assert failed["note"].startswith("failed: RuntimeError")
    (ratio,) = rate["ratios"]  # none for the variant that failed
    assert ratio["peer"] == "list comprehension"
    expected = [b / p for b, p in zip(plait["figures"], peer["figures"], strict=True)]
    assert ratio["per_round"] == pytest.approx(expected)
    assert time["unit"] == "s" and time["higher_is_better"] is False
    (ratio,) = time["ratios"]
    base, peer = time["variants"]
    expected = [p / b for b, p in zip(base["figures"], peer["figures"], strict=True)]
    assert ratio["per_round"] == pytest.approx(expected)  # times: peer / plait


def date_in_words(data: dict) -> str:
    data["started"] = "the day before yesterday"
    return "'started' is not an ISO 8601 time"


def figure_in_words(data: dict) -> str:
    data["cases"][1]["variants"][0]["figures"][1] = "fast"
    return "variant 'generator' of case 'sum of squares, time' should be a number"


def name_a_path(data: dict) -> str:
    data["bench"] = "../../elsewhere"
    return "'bench' should name a file of charts/"


def ratio_to_nobody(data: dict) -> str:
    data["cases"][0]["ratios"][0]["peer"] = "nobody"
    return "ratio to 'nobody' of case 'sum of squares, rate': no such peer"


def ratio_of_zero(data: dict) -> str:
    ratio = data["cases"][0]["ratios"][0]
    ratio["per_round"] = [0.0] * len(ratio["per_round"])
    ratio["median"] = ratio["min"] = ratio["max"] = 0.0
    return "should be a positive number, not 0.0"


def median_not_a_number(data: dict) -> str:
    data["cases"][1]["variants"][1]["median"] = float("nan")  # json writes NaN
    return "variant 'map' of case 'sum of squares, time' 'median' should be a finite number"


def load_in_words(data: dict) -> str:
    data["conditions"]["load_start"] = "high"
    return "'conditions' 'load_start' (the load averages over 1, 5 and 15 minutes) should be"


def versions_as_a_list(data: dict) -> str:
    data["conditions"]["versions"] = ["plait"]
    return "'conditions' 'versions' should map package names to versions"


@pytest.mark.parametrize(
    "break_it",
    [
        date_in_words,
        figure_in_words,
        name_a_path,
        ratio_to_nobody,
        ratio_of_zero,
        median_not_a_number,
        load_in_words,
        versions_as_a_list,
    ],
)
def test_a_result_with_a_broken_field_is_refused(results, capsys, break_it):
    path = results / "first.json"
    data = json.loads(path.read_text())
    cause = break_it(data)
    path.write_text(json.dumps(data))
    message = refused(results, capsys)
    assert str(path) in message and "malformed" in message and cause in message


def test_load_reads_back_what_the_bench_wrote(results):
    run = bench_report.load(results / "second.json")
    assert run.bench == "second"
    again = results / "again.json"
    bench_report.dump(run, again)
    assert bench_report.load(again) == run


@needs_matplotlib
def test_the_report_draws_charts_and_report_md_from_the_json(results, capsys):
    before = snapshot(results)
    assert main(["bench", "--report", str(results)]) == 0
    after = snapshot(results)
    assert {k: v for k, v in after.items() if k in before} == before  # the JSON untouched
    made = sorted(set(after) - set(before))
    assert made == [
        "charts/first.png",
        "charts/first.svg",
        "charts/second.png",
        "charts/second.svg",
        "report.md",
    ]
    assert after["charts/first.png"].startswith(b"\x89PNG")
    assert b"<svg" in after["charts/first.svg"]
    report = after["report.md"].decode()
    assert "a recording" in report
    for name in ("first", "second"):
        assert f"## tiny {name}" in report
        assert f"![tiny {name}](charts/{name}.svg)" in report
    assert "| always fails | failed: RuntimeError: this variant always fails |" in report
    assert "report.md" in capsys.readouterr().out

    assert main(["bench", "--report", str(results)]) == 0  # again: the very same files
    assert snapshot(results) == after


@needs_matplotlib
def test_a_note_opens_the_report(results):
    (results / "NOTE.md").write_text("The machine was shared with six other sessions.\n")
    bench_report.write_report(results)
    assert "six other sessions" in (results / "report.md").read_text()


def refused(directory: pathlib.Path, capsys) -> str:
    """Run the report on ``directory``, expect it to fail and change nothing; its message."""
    before = snapshot(directory)
    assert main(["bench", "--report", str(directory)]) == 1
    assert snapshot(directory) == before
    assert not list(directory.glob(".report-*"))  # no temporary directory left behind
    return capsys.readouterr().err


def test_a_directory_without_results_is_refused(tmp_path, capsys):
    message = refused(tmp_path, capsys)
    assert str(tmp_path) in message and "no benchmark results" in message


def test_a_missing_directory_is_refused(tmp_path, capsys):
    assert main(["bench", "--report", str(tmp_path / "nowhere")]) == 1
    assert "no such directory" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize(
    ("content", "cause"),
    [
        (b"{ half a result", "not JSON"),
        (b"\xff\xfe binary", "not JSON"),
        (b'{"rows": [1, 2, 3]}', "not plait benchmark results"),
        (b"[1, 2, 3]", "not plait benchmark results"),
        (b'{"format": "plait-bench/1", "bench": "x"}', "malformed"),
    ],
)
def test_a_file_that_is_not_our_json_is_refused(results, capsys, content, cause):
    bad = results / "bad.json"
    bad.write_bytes(content)
    message = refused(results, capsys)
    assert str(bad) in message and cause in message


@pytest.mark.parametrize(("version", "age"), [("0", "an older"), ("2", "an unknown")])
def test_results_of_another_format_version_are_refused(results, capsys, version, age):
    path = results / "first.json"
    data = json.loads(path.read_text())
    data["format"] = f"plait-bench/{version}"
    path.write_text(json.dumps(data))
    message = refused(results, capsys)
    assert str(path) in message and f"{age} format" in message


@needs_matplotlib
def test_a_failed_report_leaves_the_previous_one_as_it_was(results, capsys):
    assert main(["bench", "--report", str(results)]) == 0
    (results / "charts" / "first.svg").unlink()  # not even a missing chart is redrawn
    (results / "third.json").write_text("not json")
    message = refused(results, capsys)
    assert "third.json" in message


@needs_matplotlib
@pytest.mark.parametrize("renames", [1, 2], ids=["old charts out", "new charts in"])
def test_a_report_interrupted_between_its_renames_leaves_the_previous_one(results, renames):
    # The charts are swapped by two renames. A real Ctrl-C (SIGINT) lands right after
    # the first or the second one: the old charts must not go with the temporary tree.
    assert bench_report.write_report(results)
    (results / "charts" / "first.svg").write_text("the old chart")  # not what a redraw makes
    before = snapshot(results)
    done = []

    def ctrl_c_after_a_rename(frame, event, arg):
        if event == "c_return" and arg is os.rename:
            done.append(arg)
            if len(done) == renames:
                sys.setprofile(None)
                signal.raise_signal(signal.SIGINT)

    sys.setprofile(ctrl_c_after_a_rename)
    try:
        with pytest.raises(KeyboardInterrupt):
            bench_report.write_report(results)
    finally:
        sys.setprofile(None)
    assert len(done) == renames
    assert snapshot(results) == before  # no half-made report, no temporary tree left


def test_without_matplotlib_the_report_names_the_docs_extra(results):
    before = snapshot(results)
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"  # what an absent package looks like
        "from plait.__main__ import main\n"
        f"sys.exit(main(['bench', '--report', {str(results)!r}]))\n"
    )
    done = run_python("-c", code, timeout=60, sys_path=True)
    assert done.returncode == 1
    assert "matplotlib" in done.stderr and "plait[docs]" in done.stderr
    assert snapshot(results) == before


def test_the_report_runs_no_benchmark(results, capsys):
    before = snapshot(results)
    with pytest.raises(SystemExit) as stopped:
        main(["bench", "--report", str(results), "--quick", "threads"])
    assert stopped.value.code == 2
    assert "--report runs no benchmark" in capsys.readouterr().err
    assert snapshot(results) == before


def test_a_cap_alarm_after_the_variant_returned_does_not_escape_the_case(tmp_path):
    # The cap's timer can expire just after a variant returned: then its alarm arrives
    # while the harness turns the timer off, outside the ``except OverCap`` of the call.
    # A profile hook raises the real SIGALRM at that very moment: when the harness calls
    # setitimer for the first time after the variant returned.
    bench = harness.Bench("late alarm", rounds=1, cap=30, name="late", json_path=tmp_path)
    returned = []

    def variant() -> float:
        returned.append(True)
        return 1.0

    def alarm_at_the_disarm(frame, event, arg):
        if event == "c_call" and arg is signal.setitimer and returned:
            sys.setprofile(None)
            signal.raise_signal(signal.SIGALRM)

    sys.setprofile(alarm_at_the_disarm)
    try:
        figures = bench.case("one quick call", {"plait": variant})
    finally:
        sys.setprofile(None)
    assert figures == {"plait": [1.0]}  # measured, not "over cap", and no OverCap escaped
    assert bench.cases[0].variants[0].note is None


def test_the_json_option_is_taken_off_the_command_line():
    for argv, path in (
        (["bench_x.py", "--quick", "--json", "out/", "--rounds", "3"], "out/"),
        (["bench_x.py", "--json=out/x.json", "--quick"], "out/x.json"),
        (["bench_x.py", "--quick"], None),
    ):
        rest = [a for a in argv if a not in ("--json", path) and not a.startswith("--json=")]
        assert harness._take_json_option(argv) == path
        assert argv == rest
