"""The ``spawn`` start method: a fresh interpreter that rebuilds the process and runs it.

Theory of operation
-------------------
The parent ``posix_spawn``s ``python -S -c "...; main(fd, lifeline_fd)"`` (the same
interpreter and interpreter flags as the parent) with a pipe's read end as ``fd``, and
writes one pickle into the pipe: ``(preparation data, pickled Process)``. The child reads
it to EOF, applies the preparation data (``sys.path``, ``sys.argv``, the working
directory, the parent's ``__main__`` re-run as ``__mp_main__``), then unpickles the
``Process`` and runs ``Process._bootstrap``. That child side (``prepare``,
``load_and_run`` and the entry point ``main``) lives in ``bootstrap``, which the fork
server shares; this module is the parent's side. Two pickles, because the ``Process`` can
only be unpickled once ``sys.path`` and ``__main__`` are in place. Objects among the
arguments that own an fd (a ``Connection``) pickle it through ``plait._core.fdpass``:
the parent collects dups of those fds while it pickles, the child inherits them at the
same numbers (``posix_spawn`` dup2 actions), and the payload lists the numbers.

Where the time goes, and what we do about it
--------------------------------------------
Most of what a bare ``python -c pass`` costs is ``site`` (``bench_process.py`` shows
that floor beside each start method): it processes every ``.pth`` file of the
environment, and some of them import a lot (an editable install's finder pulls in
``pathlib``, ``re``, ``urllib``...). The child does not need
that work to find modules, because it receives the parent's finished ``sys.path``.
So the child starts with ``-S`` and *defers* site: it installs the builtins ``site`` adds
(``exit``, ``quit``, ``help``...), copies ``sys.prefix``/``sys.exec_prefix`` from the
parent, and puts a finder at the end of ``sys.meta_path`` (``_SiteOnDemand``) that runs
``site.main()`` the first time an import fails to find its module, then retries that
import. A package that only a ``.pth`` import hook can find therefore still imports;
a program whose imports all resolve through ``sys.path`` never pays for ``site``. What a
deferred ``site`` changes, visibly: ``sitecustomize`` runs late or never, and
``sys.flags.no_site`` is 1 in the child.

The rest is kept small: the child imports ``_pickle`` (not ``pickle``, which drags in
``re``), ``bootstrap`` and ``process``; ``logging``, ``cloudpickle``, ``runpy`` and
``traceback`` are imported only when used. Main scripts that are plain files are run
with ``compile``/``exec`` instead of ``runpy``. No resource-tracker process is started.

``__main__``: a parent started as ``python script.py`` has its script re-run in the
child under the name ``__mp_main__`` (so the ``if __name__ == "__main__":`` block does
not run again) and registered as ``__main__`` too, so that functions pickled as
``__main__.f`` are found. A parent started as ``python -m pkg.mod`` has ``pkg.mod``
re-run the same way. A parent whose ``__main__`` cannot be re-run (``python -c``, an
interactive session, a notebook, ``python -m pkg`` whose main is ``pkg.__main__``) has
its ``Process`` pickled with cloudpickle, which sends functions and classes of
``__main__`` by value. These are the rules ``multiprocessing`` follows, plus the last.
"""

from __future__ import annotations

import os
import sys

from plait.process import interop, lifeline, log
from plait.process.bootstrap import main_is_rerun, prepare, run_main_path
from plait.process.child import DirectChild

# Annotations only: importing typing would cost every child ~10 ms (see spawn).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from plait.process.process import Process

__all__ = [
    "SpawnChild",
    "preparation_data",
    "prepare",
    "child_command",
    "set_executable",
    "get_executable",
    "get_preparation_data",
    "import_main_path",
    "is_forking",
    "spawn_main",
    "get_command_line",
    "STDIN_FROM_DEVNULL",
    "dumps_payload",
]


# Higher layers that must act in a child before anything is unpickled (``plait.patch``)
# register here, without this layer importing them: module name -> a function returning
# the argument of that module's ``prepare_child(argument)`` in the child, or None when the
# child needs nothing. ``prepare`` imports the module and calls it first of all.
child_preparers: dict[str, Callable[[], Any]] = {}


def preparation_data(start_method: str) -> dict[str, Any]:
    """What a child needs to look like its parent before it unpickles the ``Process``."""
    data: dict[str, Any] = {
        "sys_path": list(sys.path),
        "sys_argv": list(sys.argv),
        "dir": os.getcwd(),
        "prefix": (sys.prefix, sys.exec_prefix),
        "site": not sys.flags.no_site,
        "start_method": start_method,
    }
    preparers = [(name, get()) for name, get in child_preparers.items()]
    preparers = [(name, argument) for name, argument in preparers if argument is not None]
    if preparers:
        data["preparers"] = preparers
    if log._stderr_level is not None:
        data["stderr_log_level"] = log._stderr_level
    if log._logger is not None:
        data["log_level"] = log.effective_level()
    main_module = sys.modules["__main__"]
    main_name = getattr(getattr(main_module, "__spec__", None), "name", None)
    if main_name is not None:
        data["main_name"] = main_name
    else:
        main_path = getattr(main_module, "__file__", None)
        if main_path is not None:
            data["main_path"] = os.path.normpath(os.path.abspath(main_path))
    return data


def dumps_process(process_obj: Process, data: dict[str, Any]) -> bytes:
    """Pickle the ``Process``; by value for ``__main__`` objects the child cannot re-import.

    Objects of the standard ``multiprocessing`` among the arguments are pickled as that
    module pickles them for a new child (see ``interop``), on both paths.
    """
    from plait._core import fdpass, serialization  # noqa: PLC0415 - parents only

    with interop.spawning():
        if main_is_rerun(data):
            mark = fdpass.collected()
            try:
                return _dump_with(serialization.pickle.Pickler, process_obj)
            except serialization.REFUSALS:
                fdpass.drop_collected_since(mark)  # lambdas and closures: by value, below
        import cloudpickle  # noqa: PLC0415 - only for what pickle refuses

        return _dump_with(cloudpickle.CloudPickler, process_obj)


def _dump_with(pickler_class: Any, obj: Any) -> bytes:
    """``obj`` pickled by ``pickler_class``, whose dispatch table gains the reducers the
    standard module registered with its own ``ForkingPickler`` (connections, sockets)."""
    import copyreg  # noqa: PLC0415 - parents only
    import io  # noqa: PLC0415

    from plait._core import serialization  # noqa: PLC0415

    standard = interop.standard_reducers()
    if standard:
        from collections import ChainMap  # noqa: PLC0415

        # A class attribute: the C pickler reads its table once, when it is made.
        own = getattr(pickler_class, "dispatch_table", None)  # the C class: a descriptor
        table = ChainMap(
            standard, own if isinstance(own, dict | ChainMap) else copyreg.dispatch_table
        )
        pickler_class = type("StandardAwarePickler", (pickler_class,), {"dispatch_table": table})
    buffer = io.BytesIO()
    pickler_class(buffer, serialization.PROTOCOL).dump(obj)
    return buffer.getvalue()


def dumps_payload(
    process_obj: Process, start_method: str, *, copy_of_parent: bool = False
) -> tuple[bytes, Any]:
    """The one message a spawned (or forkserver) child reads before it runs.

    Returns ``(payload, collector)``: the ``fdpass.FdCollector`` holds dups of the fds
    that objects among the arguments own (a ``Connection``); the caller passes them to
    the child and then calls ``collector.close()``. With ``copy_of_parent`` (a child of
    a fork helper, a copy of this process) the payload carries no preparation data.
    """
    from plait._core import fdpass, serialization  # noqa: PLC0415 - parents only

    data = preparation_data(start_method)
    collector = fdpass.FdCollector()
    try:
        with collector:
            blob = dumps_process(process_obj, data)
        sent = None if copy_of_parent else data
        return serialization.dumps((sent, blob, collector.fds)), collector
    except BaseException:
        collector.close()
        raise


_flags: list[str] | None = None
_executable: str | None = None


def set_executable(executable: str) -> None:
    """Use ``executable`` instead of ``sys.executable`` for spawned children and servers."""
    global _executable
    _executable = os.fsdecode(executable)


def get_executable() -> str:
    """The interpreter spawned children and fork servers run."""
    return _executable or sys.executable


def get_preparation_data(name: str | None = None) -> dict[str, Any]:
    """What a spawned child adopts before it runs (``sys.path``, cwd, ``__main__``...)."""
    return preparation_data("spawn")


def import_main_path(main_path: str) -> None:
    """Run the script ``main_path`` as ``__mp_main__`` and make it ``__main__``."""
    run_main_path(os.path.abspath(main_path))


def is_forking(argv: list[str]) -> bool:
    """Always false: plait's children are never told apart by their command line."""
    return False


def spawn_main(*args: Any, **kwargs: Any) -> None:
    """Not offered: a plait child's entry point takes plait's own arguments."""
    raise NotImplementedError(
        "plait's spawned children do not start through multiprocessing.spawn.spawn_main; "
        "start them with plait.multiprocessing.get_context('spawn').Process"
    )


def get_command_line(**kwds: Any) -> list[str]:
    """Not offered: plait's child command carries plait's own bootstrap."""
    raise NotImplementedError(
        "plait's spawn has no multiprocessing-style command line; set the interpreter "
        "with set_executable() and start children with get_context('spawn').Process"
    )


STDIN_FROM_DEVNULL = (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)


def child_command(call: str) -> list[str]:
    """argv of a lean child interpreter that runs ``call`` (Python source) after import.

    ``call`` runs with ``plait`` importable whatever the child's ``sys.path`` would be.
    """
    global _flags
    if _flags is None:
        import subprocess  # noqa: PLC0415 - parents only, once

        _flags = [f for f in subprocess._args_from_interpreter_flags() if f != "-S"]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    executable = _executable or sys.executable
    if not executable:
        raise OSError("cannot spawn a child: sys.executable is empty; see set_executable()")
    code = f"import sys;sys.path[:0]=[{root!r}];{call}"
    return [executable, *_flags, "-S", "-c", code]


class SpawnChild(DirectChild):
    """Start a fresh interpreter that rebuilds ``process_obj`` and runs it."""

    method = "spawn"

    def __init__(self, process_obj: Process) -> None:
        payload, collector = dumps_payload(process_obj, self.method)
        lifeline_fd = lifeline.reader() if lifeline.wanted(process_obj) else -1
        r, w = os.pipe()
        try:
            # DUP2 onto the same number clears close-on-exec: the child gets these fds.
            inherited = [r, *collector.fds] + ([lifeline_fd] if lifeline_fd >= 0 else [])
            actions = [STDIN_FROM_DEVNULL] + [(os.POSIX_SPAWN_DUP2, fd, fd) for fd in inherited]
            argv = child_command(
                f"from plait.process.bootstrap import main;main({r},{lifeline_fd})"
            )
            pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
        except BaseException:
            os.close(w)
            if lifeline_fd >= 0:
                lifeline.release()
            raise
        finally:
            os.close(r)
            collector.close()
            if lifeline_fd >= 0:
                os.close(lifeline_fd)
        try:
            super().__init__(pid, lifeline_fd >= 0)
        except BaseException:
            os.close(w)
            raise
        try:
            with open(w, "wb", closefd=True) as pipe:
                pipe.write(frame_payload(payload))
        except BrokenPipeError:
            pass  # the child died before reading; its exit code tells why


def frame_payload(payload: bytes) -> bytes:
    """``payload`` with the 8-byte length ``read_payload`` expects."""
    return len(payload).to_bytes(8, "little") + payload
