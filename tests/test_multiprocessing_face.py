"""plait.multiprocessing is a drop-in face: same names, same observable behaviour."""

import importlib
import multiprocessing
import pkgutil
import textwrap

import pytest

from tests.support import run_on_both, run_python

# Every public submodule of the standard package (the Windows-only one aside), read from
# the standard package itself, and the package.
STANDARD_MODULES = [
    "multiprocessing",
    "multiprocessing.dummy.connection",
    *(
        f"multiprocessing.{module.name}"
        for module in pkgutil.iter_modules(multiprocessing.__path__)
        if module.name != "popen_spawn_win32"
    ),
]


def _face_and_standard(standard_name: str):
    face = importlib.import_module(f"plait.{standard_name}")
    return face, importlib.import_module(standard_name)


@pytest.mark.parametrize("standard_name", STANDARD_MODULES)
def test_face_exports_only_standard_names_and_all_resolve(standard_name):
    face, standard = _face_and_standard(standard_name)
    extra = set(face.__all__) - set(dir(standard))
    assert not extra, f"{face.__name__} exports names the standard module lacks: {extra}"
    for name in face.__all__:
        obj = getattr(face, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            # DESIGN.md: errors users catch by standard names are the standard classes.
            assert issubclass(obj, getattr(standard, name)), name
        elif not isinstance(obj, int | str):  # constants such as SUBDEBUG are plain values
            # a module (reducer) has a __name__; a table (listener_client) neither name
            home = getattr(obj, "__module__", None) or getattr(obj, "__name__", "")
            assert not home.startswith("multiprocessing"), f"{name} is borrowed"


@pytest.mark.parametrize("standard_name", STANDARD_MODULES)
def test_face_has_every_public_name_of_the_standard_module(standard_name):
    face, standard = _face_and_standard(standard_name)
    missing = [n for n in standard.__all__ if not hasattr(face, n)]
    assert not missing, f"{face.__name__} lacks {missing}"


def test_every_submodule_is_an_attribute_of_the_package_after_a_bare_import():
    code = (
        "import plait.multiprocessing as mp; "
        f"print(all(getattr(mp, name.split('.')[1]) for name in {STANDARD_MODULES[2:]}))"
    )
    run = run_python("-c", code, timeout=50)
    assert run.stdout.strip() == "True", run.stderr


CLASSIC = """
import sys
import {module} as multiprocessing
from {module}.connection import Client, Listener


def square(conn, x):
    conn.send(x * x)
    conn.close()


def serve(key, report):
    with Listener(("127.0.0.1", 0), authkey=key) as listener:
        report.send(listener.address)  # listening: the client connects at once
        with listener.accept() as conn:
            conn.send_bytes(conn.recv_bytes().upper())


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1])
    results = []
    for x in range(3):
        here, there = multiprocessing.Pipe()
        p = multiprocessing.Process(target=square, args=(there, x), name=f"sq{{x}}")
        p.start()
        results.append(here.recv())
        p.join()
        print(p.name, p.exitcode, p.is_alive())
    print(results)
    here, there = multiprocessing.Pipe()
    server = multiprocessing.Process(target=serve, args=(b"k", there), daemon=True)
    server.start()
    assert here.poll(30), "the server did not listen within 30 s"
    with Client(here.recv(), authkey=b"k") as conn:
        conn.send_bytes(b"hello")
        print(conn.recv_bytes())
    server.join(30)
    print("server", server.exitcode, multiprocessing.active_children())
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_classic_program_prints_the_same_on_both(tmp_path, method):
    assert "[0, 1, 4]" in run_on_both(tmp_path, CLASSIC, method, timeout=60)


CONTEXT = """
import sys
import {module} as multiprocessing


def produce(q, lock, counter, done):
    for i in range(100):
        q.put(i)
    with lock:
        counter.value += 1
    done.set()


def square(x):
    return x * x


if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    q, lock, counter, done = ctx.Queue(), ctx.Lock(), ctx.Value("i", 0), ctx.Event()
    p = ctx.Process(target=produce, args=(q, lock, counter, done))
    p.start()
    print(sum(q.get(timeout=30) for _ in range(100)), done.wait(30))
    p.join(30)
    print(p.exitcode, counter.value)
    with ctx.Pool(2) as pool:
        print(pool.map(square, range(10)))
    with ctx.Manager() as manager:
        d = manager.dict(a=1)
        print(sorted(d.items()))
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_context_constructors_behave_the_same(tmp_path, method):
    """ctx.Queue/Lock/Value/Event/Pool/Manager: one script, both modules, same output."""
    output = run_on_both(tmp_path, CONTEXT, method, timeout=100)
    assert "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]" in output


LAZY = """
import sys
import {module} as multiprocessing

print([m for m in {heavy} if m in sys.modules])
print(set(multiprocessing.__all__) <= set(dir(multiprocessing)))
ctx = multiprocessing.get_context("spawn")
print("Pool" in dir(ctx), callable(ctx.Pool), callable(ctx.Queue), callable(ctx.Manager))
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "module, heavy",
    [
        ("multiprocessing", ["multiprocessing.pool", "multiprocessing.managers"]),
        ("plait.multiprocessing", ["plait.pool", "plait.managers"]),
    ],
)
def test_import_leaves_pool_and_managers_for_first_use(module, heavy):
    """Importing the face imports neither the pool nor the managers, yet names them all."""
    code = textwrap.dedent(LAZY.format(module=module, heavy=heavy))
    run = run_python("-c", code, timeout=50)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["[]", "True", "True True True True"]
