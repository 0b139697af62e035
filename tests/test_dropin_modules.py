"""The submodules beyond the basics (context, util, reduction, spawn, resource_tracker...):
one program, run on ``multiprocessing`` and on ``plait.multiprocessing``, prints the same."""

from __future__ import annotations

import importlib
import io
import logging
import os
import sys
import textwrap

import pytest

from tests.support import run_on_both, run_python

CONTEXTS = """
import sys
import multiprocessing.context as standard_context
import {module} as multiprocessing
from {module} import context

ctx = multiprocessing.get_context(sys.argv[1])
print(isinstance(ctx, standard_context.BaseContext), isinstance(ctx, context.BaseContext))
print(type(ctx).__name__, ctx.Process.__name__, ctx.get_start_method())
print(issubclass(ctx.Process, multiprocessing.process.BaseProcess))
print(multiprocessing.get_start_method(allow_none=True))
multiprocessing.set_start_method(sys.argv[1])
try:
    multiprocessing.set_start_method("spawn")
except RuntimeError as e:
    print("RuntimeError", e)
try:
    ctx.set_start_method("spawn")
except ValueError as e:
    print("ValueError", e)
try:
    multiprocessing.get_context("nonsense")
except ValueError as e:
    print("ValueError", e)
multiprocessing.set_start_method(None, force=True)
print(multiprocessing.get_start_method(allow_none=True))
print(type(multiprocessing.get_context()).__name__)
multiprocessing.set_start_method(None, force=True)
multiprocessing.set_start_method(None)
print(multiprocessing.get_start_method(allow_none=True))
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_contexts_are_standard_base_contexts_with_the_standard_semantics(tmp_path, method):
    output = run_on_both(tmp_path, CONTEXTS, method, timeout=50)
    assert output.startswith("True True\n")
    assert "RuntimeError context has already been set" in output


def test_a_subclass_of_plaits_base_context_keeps_its_attributes():
    from plait.multiprocessing import context

    class Mine(context.BaseContext):
        pass

    assert Mine().get_start_method() is None
    assert callable(Mine().Queue)


def test_a_context_offers_queues_without_importing_the_layer_first():
    """The one name table: plait.process alone gives get_context(...).Queue and .Pool."""
    code = textwrap.dedent(
        """
        import sys
        import plait.process
        ctx = plait.process.get_context("spawn")
        print("plait.ipc" in sys.modules)
        q = ctx.Queue()
        q.put(41)
        print(q.get(timeout=5) + 1, "plait.ipc" in sys.modules, callable(ctx.Pool))
        """
    )
    run = run_python("-c", code, timeout=50)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False", "42", "True", "True"]


FINALIZE = """
import gc
import os
import sys
import {module} as multiprocessing
from {module} import util


class Thing:
    pass


def child(conn):
    tempdir = util.get_temp_dir()
    conn.send((os.path.isdir(tempdir), tempdir))
    a = Thing()
    util.Finalize(a, conn.send, args=("a",))
    del a
    gc.collect()
    b = Thing()
    close_b = util.Finalize(b, conn.send, args=("b",))
    close_b()
    close_b()
    c = Thing()
    util.Finalize(c, conn.send, args=("c",))
    d10 = Thing()
    util.Finalize(d10, conn.send, args=("d10",), exitpriority=1)
    d01 = Thing()
    util.Finalize(d01, conn.send, args=("d01",), exitpriority=0)
    d02 = Thing()
    util.Finalize(d02, conn.send, args=("d02",), exitpriority=0)
    util.Finalize(None, conn.send, args=("e",), exitpriority=-10)
    util.Finalize(None, conn.send, args=("STOP",), exitpriority=-100)
    util._exit_function()
    conn.close()
    os._exit(0)


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1])
    here, there = multiprocessing.Pipe()
    p = multiprocessing.Process(target=child, args=(there,))
    p.start()
    made, tempdir = here.recv()
    print(made, [obj for obj in iter(here.recv, "STOP")])
    p.join(30)
    print(p.exitcode, os.path.exists(tempdir), util.is_exiting())
    lock = util.ForkAwareThreadLock()
    with lock:
        print("locked", lock.acquire(False))
    print(util.SUBDEBUG, util.SUBWARNING, multiprocessing.SUBWARNING)
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_finalizers_run_in_children_by_priority_and_the_temp_dir_goes(tmp_path, method):
    output = run_on_both(tmp_path, FINALIZE, method, timeout=80)
    assert "True ['a', 'b', 'd10', 'd02', 'd01', 'e']\n0 False False" in output


AFTER_FORK = """
import {module} as multiprocessing
from {module} import util


class Registry:
    pass


def report(conn):
    conn.send(sorted(vars(registry)))
    conn.send(local.__dict__)


if __name__ == "__main__":
    registry = Registry()
    registry.parent_only = 1
    util.register_after_fork(registry, lambda obj: obj.__dict__.clear())
    local = util.ForkAwareLocal()
    local.value = 1
    here, there = multiprocessing.Pipe()
    p = multiprocessing.get_context("fork").Process(target=report, args=(there,))
    p.start()
    print(here.recv(), here.recv(), vars(registry), local.value)
    p.join(30)
    print(p.exitcode)
"""


@pytest.mark.timeout(60)
def test_after_fork_callbacks_run_in_a_forked_child(tmp_path):
    output = run_on_both(tmp_path, AFTER_FORK, "fork", timeout=50)
    assert output == "[] {} {'parent_only': 1} 1\n0\n"


LOG_LEVEL = """
import logging
import sys
import {module} as multiprocessing


def level(conn):
    conn.send(multiprocessing.get_logger().getEffectiveLevel())


if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    logger = multiprocessing.get_logger()
    print(bool(logger.propagate), logging.getLevelName(5), logging.getLevelName(25))
    for logger_level, root_level in ((32, logging.WARNING), (logging.NOTSET, 37)):
        logger.setLevel(logger_level)
        logging.getLogger().setLevel(root_level)
        here, there = ctx.Pipe()
        p = ctx.Process(target=level, args=(there,))
        p.start()
        print(here.recv())
        p.join(30)
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_children_inherit_the_logger_level(tmp_path, method):
    output = run_on_both(tmp_path, LOG_LEVEL, method, timeout=80)
    assert output == "False Level 5 Level 25\n32\n37\n"


@pytest.mark.parametrize("module", ["multiprocessing", "plait.multiprocessing"])
def test_util_log_records_name_the_calling_file(module):
    """util.info() and its siblings log the caller's file (the standard library's does
    from 3.13; plait's own log module is never the right answer)."""
    if module == "multiprocessing" and sys.version_info < (3, 13):
        pytest.skip("the standard util names its own file before 3.13")
    mp = importlib.import_module(module)
    util = importlib.import_module(f"{module}.util")
    logger = mp.get_logger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelno)s %(filename)s %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(util.SUBDEBUG)
    try:
        util.sub_debug("1")
        util.debug("2")
        util.info("3")
        util.sub_warning("4")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    here = os.path.basename(__file__)
    assert stream.getvalue().splitlines() == [
        f"{util.SUBDEBUG} {here} 1",
        f"{util.DEBUG} {here} 2",
        f"{util.INFO} {here} 3",
        f"{util.SUBWARNING} {here} 4",
    ]


REDUCTION = """
import copyreg
import io
import os
import sys
import {module} as multiprocessing
from {module} import reduction


class Point:
    def __init__(self, x):
        self.x = x


def rebuild(x):
    return Point(x * 10)


def reduce_point(p):
    return rebuild, (p.x,)


def child(conn, fd_conn):
    conn.send(conn.recv().x)
    fd = reduction.recv_handle(fd_conn)
    with os.fdopen(fd, "rb") as f:
        conn.send(f.read())


if __name__ == "__main__":
    reduction.ForkingPickler.register(Point, reduce_point)
    print(reduction.ForkingPickler.loads(reduction.ForkingPickler.dumps(Point(1))).x)
    buf = io.BytesIO()
    reduction.dump(Point(2), buf)
    print(reduction.ForkingPickler.loads(buf.getvalue()).x)
    multiprocessing.set_start_method(sys.argv[1])
    here, there = multiprocessing.Pipe()
    fd_here, fd_there = multiprocessing.Pipe()
    p = multiprocessing.Process(target=child, args=(there, fd_there))
    p.start()
    here.send(Point(3))
    print(here.recv())
    r, w = os.pipe()
    os.write(w, b"through an fd")
    os.close(w)
    reduction.send_handle(fd_here, r, p.pid)
    os.close(r)
    print(here.recv())
    p.join(30)
    print(p.exitcode, reduction.HAVE_SEND_HANDLE)
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_registered_reducers_and_handles_cross_a_pipe(tmp_path, method):
    output = run_on_both(tmp_path, REDUCTION, method, timeout=80)
    assert output == "10\n20\n30\nb'through an fd'\n0 True\n"


def test_registered_reducers_reach_plait_queues_and_pools():
    """Beyond pipes: a reducer registered once is honoured by every plait channel."""
    code = textwrap.dedent(
        """
        import plait.multiprocessing as mp
        from plait.multiprocessing import reduction
        from tests.process.targets import Point, reduce_point, point_x

        if __name__ == "__main__":
            reduction.register(Point, reduce_point)
            q = mp.Queue()
            q.put(Point(4))
            print(q.get(timeout=10).x)
            with mp.Pool(1) as pool:
                print(pool.apply(point_x, (Point(5),)))
        """
    )
    run = run_python("-c", code, timeout=60, cwd=".")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["40", "500"]


LEAK = """
import os
import sys
import {module} as multiprocessing
from {module} import resource_tracker


def leak(name):
    os.close(os.open(os.path.join("/dev/shm", name), os.O_CREAT | os.O_RDWR, 0o600))
    resource_tracker.register("/" + name, "shared_memory")


if __name__ == "__main__":
    multiprocessing.set_start_method("spawn")
    p = multiprocessing.Process(target=leak, args=(sys.argv[1],))
    p.start()
    p.join(30)
    print(p.exitcode)
    try:
        resource_tracker.register("a" * 500, "shared_memory")
    except ValueError:
        print("too long")
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("module", ["multiprocessing", "plait.multiprocessing"])
def test_a_registered_name_is_removed_once_its_users_are_gone(tmp_path, module):
    name = f"plait-test-{module}-{os.getpid()}"
    script = tmp_path / "leak.py"
    script.write_text(textwrap.dedent(LEAK.format(module=module)))
    run = run_python(str(script), name, timeout=60)
    assert run.stdout.split() == ["0", "too", "long"], run.stderr
    assert "There appear to be 1 leaked shared_memory objects" in run.stderr
    assert not os.path.exists(os.path.join("/dev/shm", name))


MIXED = """
import sys
import multiprocessing as standard
import {module} as multiprocessing


def child(lock, queue, conn):
    with lock:
        queue.put("through a standard queue")
        conn.send("through a standard pipe")


def nothing(lock):
    pass


if __name__ == "__main__":
    method = sys.argv[1]
    ctx = standard.get_context(method)
    lock, queue = ctx.Lock(), ctx.Queue()
    here, there = ctx.Pipe()
    p = multiprocessing.get_context(method).Process(target=child, args=(lock, queue, there))
    p.start()
    print(queue.get(timeout=30), here.recv())
    p.join(30)
    print(p.exitcode)
    if method != "fork":
        fork_lock = standard.get_context("fork").Lock()
        p = multiprocessing.get_context(method).Process(target=nothing, args=(fork_lock,))
        try:
            p.start()
        except RuntimeError as e:
            print(e)
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_standard_locks_queues_and_pipes_work_in_plait_children(tmp_path, method):
    """Mixing: the standard module's objects as a plait Process's arguments work, or fail
    with the standard module's message naming both contexts."""
    output = run_on_both(tmp_path, MIXED, method, timeout=80)
    assert output.startswith("through a standard queue through a standard pipe\n0\n")
    if method != "fork" and sys.version_info >= (3, 11):  # 3.10's SemLock does not check
        assert "created in a fork context is being shared with a process in a spawn" in output


MISSING_FD = """
import os
import sys
import {module} as multiprocessing
from {module} import reduction


def write_byte(conn):
    os.write(conn.fileno(), b"\\0")


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1])
    here, there = multiprocessing.Pipe()
    p = multiprocessing.Process(target=write_byte, args=(there,))
    p.start()
    try:
        reduction.recv_handle(here)
    except RuntimeError:
        print("RuntimeError")
    p.join(30)
"""


@pytest.mark.timeout(60)
def test_recv_handle_without_an_fd_raises(tmp_path):
    assert run_on_both(tmp_path, MISSING_FD, "fork", timeout=50) == "RuntimeError\n"


UNGUARDED = """
import sys
import {module} as multiprocessing


def foo():
    print("123")


multiprocessing.set_start_method(sys.argv[1])
p = multiprocessing.Process(target=foo)
p.start()
p.join(30)
sys.exit(p.exitcode)
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
@pytest.mark.parametrize("module", ["multiprocessing", "plait.multiprocessing"])
def test_a_script_without_the_main_guard_fails_instead_of_forking_a_bomb(tmp_path, module, method):
    script = tmp_path / "bomb.py"
    script.write_text(textwrap.dedent(UNGUARDED.format(module=module)))
    run = run_python(str(script), method, timeout=60)
    assert run.returncode != 0
    assert run.stdout == ""
    assert "RuntimeError" in run.stderr


STANDARD_POOLS = """
import sys
import concurrent.futures
import multiprocessing.pool
import {module} as multiprocessing


def square(x):
    return x * x


if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    with multiprocessing.pool.Pool(2, context=ctx) as pool:
        print(pool.map(square, range(10)), pool.apply_async(square, (7,)).get(30))
        print(sorted(pool.imap_unordered(square, range(5))))
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as executor:
        print(list(executor.map(square, range(10))), executor.submit(square, 9).result(30))
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_the_standard_pool_and_executor_run_on_a_plait_context(tmp_path, method):
    """multiprocessing.pool.Pool(context=ctx) and ProcessPoolExecutor(mp_context=ctx)
    with ctx a plait context: the standard implementations run work on plait's processes,
    queues (their pipe ends waited on through the ring's doorbell) and locks."""
    output = run_on_both(tmp_path, STANDARD_POOLS, method, timeout=100)
    assert output == (
        "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81] 49\n[0, 1, 4, 9, 16]\n"
        "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81] 81\n"
    )


SOCKET = """
import socket
import sys
import {module} as multiprocessing


def child(conn):
    sock = conn.recv()
    sock.sendall(b"hello from the child")
    sock.close()


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1])
    mine, theirs = socket.socketpair()
    here, there = multiprocessing.Pipe()
    p = multiprocessing.Process(target=child, args=(there,))
    p.start()
    here.send(theirs)
    theirs.close()
    print(mine.recv(100))
    p.join(30)
    print(p.exitcode)
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_socket_travels_through_a_pipe(tmp_path, method):
    assert run_on_both(tmp_path, SOCKET, method, timeout=80) == "b'hello from the child'\n0\n"


def test_standard_objects_reach_a_spawned_child_of_a_program_run_with_dash_c():
    """No script to re-run: the Process is pickled by value (cloudpickle), and the
    standard pipe and queue among its arguments still arrive with their own fds."""
    code = textwrap.dedent(
        """
        import multiprocessing
        import plait.multiprocessing as plait_mp

        def child(conn, queue):
            conn.send("through the pipe")
            queue.put("through the queue")

        here, there = multiprocessing.Pipe()
        queue = multiprocessing.get_context("spawn").Queue()
        p = plait_mp.get_context("spawn").Process(target=child, args=(there, queue))
        p.start()
        print(here.recv(), queue.get(timeout=30))
        p.join(30)
        print(p.exitcode)
        """
    )
    run = run_python("-c", code, timeout=60)
    assert run.stdout == "through the pipe through the queue\n0\n", run.stderr


@pytest.mark.timeout(90)
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_many_queues_and_a_lambda_go_to_one_child(tmp_path, method):
    """Each queue owns 4 fds (80 here); a lambda makes the pickling retry by value, which
    must not count the queues' fds twice (160 would pass the limit of one message)."""
    code = textwrap.dedent(
        f"""
        import plait.multiprocessing as mp

        def child(queues, f):
            for q in queues:
                q.put(f(1))

        if __name__ == "__main__":
            ctx = mp.get_context("{method}")
            queues = [ctx.Queue() for _ in range(20)]
            p = ctx.Process(target=child, args=(queues, lambda x: x + 1))
            p.start()
            print(sum(q.get(timeout=30) for q in queues))
            p.join(30)
            print(p.exitcode)
        """
    )
    script = tmp_path / "many_queues.py"
    script.write_text(code)
    run = run_python(str(script), timeout=80)
    assert run.stdout == "40\n0\n", run.stderr
