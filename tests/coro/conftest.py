"""The ``core`` fixture: a test that uses it runs twice, on the C core of ``plait.coro``
(``plait._core._coro``: socket operations and the kernel's readiness step) and on the
pure-Python path that stands in where the core is not built."""

from __future__ import annotations

import pytest

try:
    from plait._core import _coro
except ImportError:
    _coro = None


@pytest.fixture(params=["c", "python"])
def core(request: pytest.FixtureRequest):
    if _coro is None:
        if request.param == "c":
            pytest.skip("the C core plait._core._coro is not built here")
        yield request.param
        return
    was = _coro.set_enabled(request.param == "c")
    try:
        yield request.param
    finally:
        _coro.set_enabled(was)
