"""cpu_count's cgroup arithmetic, the logger, and what a lean spawned child still has."""

from __future__ import annotations

import sys

import pytest

from plait.process import cpu
from tests.support import run_in_child, run_python

V1 = "cpu,cpuacct/x/"


def _tree(tmp_path, proc_line: str, files: dict[str, str]):
    proc = tmp_path / "cgroup"
    proc.write_text(proc_line + "\n")
    for rel, text in files.items():
        path = tmp_path / "fs" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    (tmp_path / "fs").mkdir(exist_ok=True)
    return str(proc), str(tmp_path / "fs")


@pytest.mark.parametrize(
    "proc_line, files, expected",
    [
        ("0::/a/b", {"a/b/cpu.max": "150000 100000"}, 1.5),
        ("0::/a/b", {"a/b/cpu.max": "max 100000", "a/cpu.max": "100000 100000"}, 1.0),
        ("0::/a/b", {"a/b/cpu.max": "max 100000"}, None),
        ("0::/", {}, None),
        (
            "4:memory:/m\n3:cpu,cpuacct:/x",
            {
                V1 + "cpu.cfs_quota_us": "250000",
                V1 + "cpu.cfs_period_us": "100000",
            },
            2.5,
        ),
        (
            "3:cpu,cpuacct:/x",
            {V1 + "cpu.cfs_quota_us": "-1", V1 + "cpu.cfs_period_us": "100000"},
            None,
        ),
    ],
    ids=["v2", "v2-ancestor", "v2-max", "v2-root", "v1", "v1-unlimited"],
)
def test_cgroup_quota(tmp_path, proc_line, files, expected):
    proc, root = _tree(tmp_path, proc_line, files)
    assert cpu.cgroup_cpu_quota(proc, root) == expected


def test_cgroup_quota_without_proc_file(tmp_path):
    assert cpu.cgroup_cpu_quota(str(tmp_path / "missing"), str(tmp_path)) is None


LOGGING_PROGRAM = """
import logging, sys
import plait.process

def work():
    plait.process.get_logger().info("working in %s", plait.process.current_process().name)

if __name__ == "__main__":
    logger = plait.process.log_to_stderr(logging.INFO)
    assert logger is plait.process.get_logger() and logger.name == "plait"
    p = plait.process.get_context(sys.argv[1]).Process(target=work, name="Logger")
    p.start(); p.join(30)
    sys.exit(p.exitcode)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_log_to_stderr_reaches_children(start, tmp_path):
    script = tmp_path / "logs.py"
    script.write_text(LOGGING_PROGRAM)
    out = run_python(str(script), start, timeout=50)
    assert out.returncode == 0, out.stderr
    assert "[INFO/Logger] working in Logger" in out.stderr
    assert "[INFO/Logger] child process calling self.run()" in out.stderr


def _lean_child_facts() -> dict:
    facts = {"prefix": sys.prefix, "exit builtin": callable(exit)}  # noqa: F821 - from site
    try:
        import plait_no_such_module  # noqa: F401
    except ImportError as exc:
        facts["missing import"] = type(exc).__name__
    import json  # found through the parent's sys.path

    facts["json"] = json.dumps([1])
    return facts


@pytest.mark.timeout(60)
@pytest.mark.parametrize("start", ["spawn", "forkserver"])
def test_spawned_child_without_site_still_has_what_site_gives(start):
    facts = run_in_child(_lean_child_facts, method=start)
    assert facts == {
        "prefix": sys.prefix,
        "exit builtin": True,
        "missing import": "ModuleNotFoundError",
        "json": "[1]",
    }
