"""What needs no engine: backend names, missing engines, and that plait imports neither."""

from __future__ import annotations

import sys

import pytest

from plait.pool.backends import BackendNotInstalledError, UnknownBackendError, make_engine
from tests.support import run_python


def test_unknown_backend_names_the_known_ones():
    with pytest.raises(UnknownBackendError, match="'spark'.*dask, ray") as info:
        make_engine("spark")
    assert isinstance(info.value, ValueError)
    with pytest.raises(TypeError, match="backend must be a string"):
        make_engine(3)


@pytest.mark.parametrize(("backend", "package"), [("dask", "distributed"), ("ray", "ray")])
def test_missing_engine_names_the_extra(monkeypatch, backend, package):
    monkeypatch.setitem(sys.modules, package, None)  # as if it were not installed
    with pytest.raises(
        BackendNotInstalledError, match=rf"pip install 'plait\[{backend}\]'"
    ) as info:
        make_engine(backend)
    assert isinstance(info.value, ImportError)
    assert info.value.name == package


def test_importing_plait_imports_no_engine():
    code = (
        "import sys, plait, plait.pool, plait.multiprocessing, plait.pool.backends\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'ray')))"
    )
    out = run_python("-c", code, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
