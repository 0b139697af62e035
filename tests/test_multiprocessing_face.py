"""plait.multiprocessing is a drop-in face: same names, same observable behaviour."""

import multiprocessing
import multiprocessing.connection
import multiprocessing.managers
import subprocess
import sys
import textwrap

import pytest

import plait.multiprocessing
import plait.multiprocessing.connection
import plait.multiprocessing.managers


@pytest.mark.parametrize(
    "face, standard",
    [
        (plait.multiprocessing, multiprocessing),
        (plait.multiprocessing.connection, multiprocessing.connection),
        (plait.multiprocessing.managers, multiprocessing.managers),
    ],
)
def test_face_exports_only_standard_names_and_all_resolve(face, standard):
    extra = set(face.__all__) - set(dir(standard))
    assert not extra, f"{face.__name__} exports names the standard module lacks: {extra}"
    for name in face.__all__:
        obj = getattr(face, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            # DESIGN.md: errors users catch by standard names are the standard classes.
            assert issubclass(obj, getattr(standard, name)), name
        else:
            assert not obj.__module__.startswith("multiprocessing"), f"{name} is borrowed"


CLASSIC = """
import sys
import {module} as multiprocessing
from {module}.connection import Client, Listener


def square(conn, x):
    conn.send(x * x)
    conn.close()


def serve(address, key):
    with Listener(address, authkey=key) as listener:
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
    address = ("127.0.0.1", 0)
    with Listener(address, authkey=b"k") as probe:
        address = probe.address
    server = multiprocessing.Process(target=serve, args=(address, b"k"), daemon=True)
    server.start()
    for _ in range(200):
        try:
            conn = Client(address, authkey=b"k")
            break
        except ConnectionRefusedError:
            import time; time.sleep(0.02)
    with conn:
        conn.send_bytes(b"hello")
        print(conn.recv_bytes())
    server.join(10)
    print("server", server.exitcode, multiprocessing.active_children())
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_classic_program_prints_the_same_on_both(tmp_path, method):
    outputs = {}
    for module in ("multiprocessing", "plait.multiprocessing"):
        script = tmp_path / f"classic_{module.replace('.', '_')}.py"
        script.write_text(textwrap.dedent(CLASSIC.format(module=module)))
        run = subprocess.run(
            [sys.executable, str(script), method],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        assert run.returncode == 0, f"{module}: {run.stderr}"
        outputs[module] = run.stdout
    assert outputs["plait.multiprocessing"] == outputs["multiprocessing"]
    assert "[0, 1, 4]" in outputs["multiprocessing"]
