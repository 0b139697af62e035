"""Fixtures of the process tests: the start methods, and no fork server left running."""

from __future__ import annotations

import sys

import pytest

METHODS = ["fork", "spawn", "forkserver"]

# For scenarios that fork from a process running threads on purpose (a program's choice,
# which Python 3.12+ warns about): the warning is expected there, not a finding.
FORKS_FROM_THREADS = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)


def _stop_fork_server() -> None:
    forkserver = sys.modules.get("plait.process.forkserver")
    if forkserver is not None:
        assert forkserver.stop_server(timeout=10), "the fork server did not exit"


@pytest.fixture(autouse=True)
def _no_fork_server_left():
    """Tests of other directories must not inherit a fork server from these."""
    yield
    _stop_fork_server()


@pytest.fixture(params=METHODS)
def method(request) -> str:
    """Each start method in turn."""
    return request.param
