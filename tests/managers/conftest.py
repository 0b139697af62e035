"""Fixtures of the manager tests: the two module families (standard and plait)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.managers

import pytest

import plait.multiprocessing
import plait.multiprocessing.managers
from tests.support import stop_helper_processes


class Family:
    """A ``multiprocessing``-like module and its ``managers`` module, tested alike."""

    def __init__(self, name, mp, managers):
        self.name = name
        self.mp = mp
        self.managers = managers

    def manager(self, method: str = "fork"):
        m = self.managers.SyncManager(ctx=self.mp.get_context(method))
        m.start()
        return m

    def __repr__(self) -> str:
        return self.name


STANDARD = Family("multiprocessing", multiprocessing, multiprocessing.managers)
PLAIT = Family("plait", plait.multiprocessing, plait.multiprocessing.managers)


@pytest.fixture(autouse=True)
def _stop_helpers_after_each_test():
    """The fork servers and the standard resource tracker that a test started must not
    outlive it: later tests (here and in other directories) count this process's children."""
    yield
    stop_helper_processes()


@pytest.fixture(params=[STANDARD, PLAIT], ids=repr)
def family(request):
    return request.param
