"""plait.patch(): each test runs a real program in a fresh interpreter, since a patch is
process-wide, and compares it with the same work done unpatched."""

from __future__ import annotations

import json
import os
import textwrap

import pytest

from tests.support import run_python

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A library that imported the standard modules before anyone patched them.
LIBRARY = """
import concurrent.futures
import multiprocessing
import multiprocessing as mp
import multiprocessing.pool


def square(x):
    return x * x


def put_square(q, x):
    q.put(x * x)


def work():
    with mp.Pool(2) as pool:
        mapped = pool.map(square, range(5))
        pool_module = type(pool).__module__
    q = multiprocessing.Queue()
    q.put(3)
    through_queue = q.get(timeout=60)
    spawn = mp.get_context("spawn")
    child_queue = spawn.Queue()
    child = spawn.Process(target=put_square, args=(child_queue, 7))
    child.start()
    from_child = child_queue.get(timeout=60)
    child.join(60)
    with concurrent.futures.ProcessPoolExecutor(2) as executor:
        executed = list(executor.map(square, range(4)))
        executor_module = type(executor).__module__
    return {
        "results": [mapped, through_queue, from_child, child.exitcode, executed],
        "modules": [pool_module, type(q).__module__, type(child).__module__, executor_module],
        "submodule": multiprocessing.pool.ThreadPool.__module__,
    }
"""


def run_program(tmp_path, source: str, *args: str, timeout: float = 100) -> str:
    (tmp_path / "library.py").write_text(textwrap.dedent(LIBRARY))
    script = tmp_path / "program.py"
    script.write_text(textwrap.dedent(source))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), ROOT])}
    run = run_python(str(script), *args, timeout=timeout, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    return run.stdout


@pytest.mark.timeout(120)
def test_a_library_imported_before_patch_runs_on_plait_with_the_same_results(tmp_path):
    output = run_program(
        tmp_path,
        """
        import json
        import library
        import plait

        if __name__ == "__main__":
            before = library.work()
            plait.patch()
            after = library.work()
            print(json.dumps([before, after]))
        """,
    )
    before, after = json.loads(output)
    assert after["results"] == before["results"] == [[0, 1, 4, 9, 16], 3, 49, 0, [0, 1, 4, 9]]
    assert not any(m.startswith("plait") for m in before["modules"]), before
    assert all(m.startswith("plait.") for m in after["modules"]), after
    assert before["submodule"] == "multiprocessing.pool"
    assert after["submodule"].startswith("plait.")


@pytest.mark.timeout(60)
def test_importing_plait_imports_nothing_and_patch_is_idempotent_and_undone_exactly(tmp_path):
    output = run_program(
        tmp_path,
        """
        import json
        import sys
        import types

        import plait

        loaded = sorted(m for m in sys.modules if m.startswith(("plait.", "multiprocessing")))
        import concurrent.futures
        import library  # imports the standard modules
        import concurrent.futures.process, concurrent.futures.thread
        for sub in plait.patch._MULTIPROCESSING_SUBMODULES:
            try:
                __import__("multiprocessing." + sub)
            except ImportError:
                pass  # popen_spawn_win32

        def snapshot():
            return {
                (name, attribute): getattr(module, attribute)
                for name, module in list(sys.modules.items())
                if name.startswith(("multiprocessing", "concurrent.futures"))
                for attribute in dir(module)
            }

        def concurrent_patches():
            import threading

            reports = []
            threads = [
                threading.Thread(target=lambda: reports.append(plait.patch())) for _ in range(8)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            names = [name for report in reports for name in report]
            return [len(reports), len(names) == len(set(names)), sorted(names)]

        before = snapshot()
        first = plait.patch()
        second = plait.patch()
        listed = plait.patched_modules()
        served = [library.mp.Pool.__module__, concurrent.futures.ThreadPoolExecutor.__module__]
        while_patched = type(library.mp) is types.ModuleType
        undone = plait.unpatch()
        again = plait.unpatch()
        after = snapshot()
        changed = sorted(str(key) for key in before if after.get(key) is not before[key])
        print(json.dumps({
            "loaded": loaded,
            "first": sorted(first),
            "second": dict(second),
            "listed": listed,
            "served": served,
            "while_patched": while_patched,
            "undone": sorted(undone),
            "again": dict(again),
            "changed": changed,
            "same_keys": sorted(map(str, before)) == sorted(map(str, after)),
            "types": sorted({type(sys.modules[n]) is types.ModuleType for n in listed}),
            "listed_after": plait.patched_modules(),
            "concurrent": concurrent_patches(),
        }))
        """,
    )
    report = json.loads(output)
    assert report["loaded"] == []
    assert "multiprocessing" in report["first"] and "concurrent.futures" in report["first"]
    assert "multiprocessing.pool" in report["first"]
    assert report["second"] == {} and report["again"] == {}
    assert report["listed"] == report["first"] == report["undone"]
    assert all(module.startswith("plait.") for module in report["served"])
    assert report["while_patched"] is False
    assert report["changed"] == [] and report["same_keys"]
    assert report["types"] == [True] and report["listed_after"] == []
    assert report["concurrent"] == [8, True, report["first"]]


CHILDREN = """
import sys
import multiprocessing
import plait


def report(label):
    import multiprocessing
    q = multiprocessing.Queue()
    print(label, multiprocessing.Pool.__module__, type(q).__module__, flush=True)


def child():
    report("child")
    context = multiprocessing.get_context(sys.argv[1])
    grandchild = context.Process(target=report, args=("grandchild",))
    grandchild.start()
    grandchild.join(60)


if __name__ == "__main__":
    plait.patch()
    p = multiprocessing.get_context(sys.argv[1]).Process(target=child)
    p.start()
    p.join(60)
    print("exitcode", p.exitcode)
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["spawn", "forkserver", "fork"])
def test_children_and_their_children_stay_patched(tmp_path, method):
    output = run_program(tmp_path, CHILDREN, method)
    assert output.splitlines() == [
        "child plait.pool.pool plait.ipc.queues",
        "grandchild plait.pool.pool plait.ipc.queues",
        "exitcode 0",
    ]


@pytest.mark.timeout(120)
def test_plait_objects_made_under_patch_keep_working_after_unpatch(tmp_path):
    output = run_program(
        tmp_path,
        """
        import concurrent.futures
        import multiprocessing
        import plait
        from library import square

        if __name__ == "__main__":
            with plait.patched():
                pool = multiprocessing.Pool(2)
                q = multiprocessing.Queue()
                executor = concurrent.futures.ProcessPoolExecutor(1)
                lock = multiprocessing.get_context("spawn").Lock()
            print(multiprocessing.Pool.__module__, plait.patched_modules())
            print(type(pool).__module__, pool.map(square, [1, 2, 3]))
            q.put("item")
            print(q.get(timeout=30))
            print(executor.submit(square, 5).result(timeout=60))
            with lock:
                print("locked")
            pool.close()
            pool.join()
            executor.shutdown()
        """,
    )
    assert output.splitlines() == [
        "multiprocessing.context []",
        "plait.pool.pool [1, 4, 9]",
        "item",
        "25",
        "locked",
    ]


@pytest.mark.timeout(120)
def test_patch_after_a_plait_pool_started_and_inside_its_task_works(tmp_path):
    output = run_program(
        tmp_path,
        """
        import multiprocessing
        import plait
        from plait.pool import Pool
        from library import square

        def patch_here(_):
            import multiprocessing.pool

            report = plait.patch()
            return multiprocessing.pool.Pool.__module__, bool(report)

        if __name__ == "__main__":
            pool = Pool(2)
            print(pool.map(square, [1, 2]))
            plait.patch()
            print(pool.map(square, [3]))
            with multiprocessing.Pool(2) as inner:
                print(type(inner).__module__, inner.map(square, [4]))
            plait.unpatch()
            print(pool.apply(patch_here, (0,)), multiprocessing.pool.Pool.__module__)
            pool.close()
            pool.join(30)
        """,
    )
    assert output.splitlines() == [
        "[1, 4]",
        "[9]",
        "plait.pool.pool [16]",
        "('plait.pool.pool', True) multiprocessing.pool",
    ]


@pytest.mark.timeout(120)
def test_patch_inside_a_plait_child_patches_that_child_and_its_pool(tmp_path):
    output = run_program(
        tmp_path,
        """
        import plait.multiprocessing as pm

        def child(q):
            import multiprocessing
            import plait
            import library

            plait.patch()
            q.put(library.work())

        if __name__ == "__main__":
            import multiprocessing

            q = pm.get_context("spawn").SimpleQueue()
            p = pm.get_context("spawn").Process(target=child, args=(q,))
            p.start()
            print(q.get(timeout=90)["modules"], multiprocessing.Pool.__module__)
            p.join(60)
        """,
    )
    assert output.split("]")[1].strip() == "multiprocessing.context"
    assert output.count("plait.") == 4


@pytest.mark.timeout(60)
def test_plait_itself_still_sees_the_standard_modules_while_patched(tmp_path):
    output = run_program(
        tmp_path,
        """
        import sys
        import plait

        import multiprocessing.context
        plait.patch()
        standard = vars(sys.modules["multiprocessing.context"])
        # Imported only now: its `from multiprocessing import context` must be the real one.
        from plait.process import context
        print(issubclass(context.BaseContext, standard["BaseContext"]))
        print(multiprocessing.context.BaseContext is context.BaseContext)
        print(context._standard.__dict__["BaseContext"] is standard["BaseContext"])
        import plait.multiprocessing as face
        print(face.ProcessError is standard["ProcessError"])
        print(face.TimeoutError is standard["TimeoutError"])
        ctx = face.get_context("fork")
        print(isinstance(ctx, standard["BaseContext"]))
        """,
    )
    assert output.split() == ["True"] * 6


@pytest.mark.timeout(60)
def test_threading_and_queue_are_opt_in_and_spare_the_standard_library(tmp_path):
    output = run_program(
        tmp_path,
        """
        import logging
        import queue
        import threading

        import plait

        def kinds():
            classes = [threading.Condition, threading.Thread, queue.Queue]
            return [c.__module__ for c in classes]

        print(*kinds())
        plait.patch()
        print(*kinds())
        plait.patch(threading=True, queue=True)
        print(*kinds())
        print(type(logging.Handler().lock).__module__)
        t = threading.Thread(target=print, args=("in a thread",))
        t.start()
        t.join(10)
        plait.unpatch()
        print(*kinds())
        """,
    )
    lines = output.splitlines()
    assert lines[0] == lines[1] == lines[-1]
    assert all(not kind.startswith("plait") for kind in lines[0].split())
    assert all(kind.startswith("plait") for kind in lines[2].split()), lines[2]
    assert not lines[3].startswith("plait")
    assert lines[4] == "in a thread"


@pytest.mark.timeout(120)
def test_a_fork_server_started_before_patch_gives_patched_children_and_none_after_unpatch(
    tmp_path,
):
    output = run_program(
        tmp_path,
        """
        import multiprocessing
        import plait
        import plait.multiprocessing as pm

        def report():
            import multiprocessing
            print(multiprocessing.Pool.__module__, flush=True)

        def run():
            p = pm.get_context("forkserver").Process(target=report)
            p.start()
            p.join(60)

        if __name__ == "__main__":
            run()  # starts the fork server, unpatched
            plait.patch()
            run()
            plait.unpatch()
            run()
        """,
    )
    standard = "multiprocessing.context"  # multiprocessing.Pool is a context's method
    assert output.splitlines() == [standard, "plait.pool.pool", standard]


@pytest.mark.timeout(60)
def test_a_python_c_program_sends_functions_naming_a_patched_module_to_spawned_children():
    program = textwrap.dedent(
        """
        import multiprocessing as mp
        import plait

        plait.patch()

        def child(q):
            q.put((mp.Pool.__module__, type(mp.Queue()).__module__))

        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(q,))
        p.start()
        print(*q.get(timeout=30))
        p.join(30)
        print(p.exitcode)
        """
    )
    run = run_python("-c", program, timeout=50, env={**os.environ, "PYTHONPATH": ROOT})
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["plait.pool.pool plait.ipc.queues", "0"]
