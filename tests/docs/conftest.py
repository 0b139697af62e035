"""The site, built once per test session into a temporary directory.

The tests of this directory need the ``docs`` extra (sphinx, furo, myst-parser); in a
venv without it they skip, saying so. The build is the one ``make docs`` runs:
warnings are errors (``-W --keep-going``) and every reference must resolve (``-n``).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
DOCS_EXTRA = ("sphinx", "furo", "myst_parser")


def missing_docs_extra() -> list[str]:
    return [name for name in DOCS_EXTRA if importlib.util.find_spec(name) is None]


def skip_without_docs_extra() -> None:
    missing = missing_docs_extra()
    if missing:
        pytest.skip(
            f"the docs extra is not installed ({', '.join(missing)}): pip install -e '.[docs]'"
        )


@dataclass(frozen=True, slots=True)
class Site:
    html: Path  # the built site
    returncode: int
    output: str  # what sphinx-build printed, stdout and stderr


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    skip_without_docs_extra()
    build = tmp_path_factory.mktemp("site")
    command = [
        sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-n",
        "-d", str(build / "doctrees"), str(DOCS), str(build / "html"),
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    return Site(build / "html", run.returncode, run.stdout + run.stderr)
