"""Shared fixtures: the leak checks (built on ``tests.support.leak_check``).

A scenario that runs on the standard module and on plait (the ``api``, ``mods``, ``shm``
and ``family`` fixtures of the directories) is the standard variant when one of those
fixtures holds the standard module; the standard library keeps some resources for the
life of the process, so some checks are skipped for it.
"""

from __future__ import annotations

import pytest

from tests.support import leak_check


def _runs_standard(request: pytest.FixtureRequest) -> bool:
    """Whether this test runs the standard library's variant of its scenario."""
    for name in ("api", "family"):
        if name in request.fixturenames and request.getfixturevalue(name).name == "multiprocessing":
            return True
    mods = request.getfixturevalue("mods") if "mods" in request.fixturenames else None
    if mods is not None and mods.api.name == "multiprocessing":
        return True
    return "shm" in request.fixturenames and request.getfixturevalue("shm").__name__.startswith(
        "multiprocessing"
    )


@pytest.fixture
def no_leaks():
    """Fail the test if it leaves fds, child processes or threads behind."""
    yield from leak_check()


@pytest.fixture
def no_shm_leaks(request):
    """No fd, child process, thread or /dev/shm name left behind by the test.

    The fd check is skipped for the standard library's variant of a scenario: its shared
    heap (behind ``Barrier`` and ``Value``) keeps an arena fd for the life of the process.
    """
    yield from leak_check(shm=True, fds=not _runs_standard(request), collect=True)


@pytest.fixture
def plait_no_leaks(request):
    """``no_leaks`` for plait's variant of a scenario (the standard library's may keep
    children, such as its resource tracker, or fds)."""
    if _runs_standard(request):
        yield
    else:
        yield from leak_check()
