"""The child's side of ``spawn`` and ``forkserver``: adopt the parent's state, rebuild the
``Process``, run it.

Theory of operation
-------------------
A spawned child (entry point ``main``) and a child of the fork server (``load_and_run``
on the payload it reads) do the same thing: apply the parent's preparation data
(``prepare``: ``sys.path``, ``sys.argv``, the working directory, the log levels, the start
method, the parent's ``__main__`` re-run as ``__mp_main__``), then unpickle the ``Process``
and run ``Process._bootstrap``. The fork server itself runs ``prepare`` once, so that its
children find all of it in place. The payload's format and the deferred ``site`` are
described in ``spawn``, the parent's side.

This module is what a child imports before it knows what it runs, so it imports little:
``_pickle`` rather than ``pickle``, ``site``, ``runpy`` and ``io`` only when needed, and of
plait only ``lifeline``, ``log`` and ``start``. It does not import ``process``: the
``Process`` comes out of the payload, and unpickling it imports its class.
"""

from __future__ import annotations

import os
import sys

from plait.process import lifeline, log, start

# Annotations only: importing typing would cost every child ~10 ms (see spawn).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "load_and_run",
    "main",
    "main_is_rerun",
    "prepare",
    "read_exactly",
    "read_payload",
    "run_main_path",
]


def main_is_rerun(data: dict[str, Any]) -> bool:
    """Whether the child will re-run the parent's ``__main__`` (see ``prepare``)."""
    name = data.get("main_name")
    if name is not None:
        return name != "__main__" and not name.endswith(".__main__")
    path = data.get("main_path")
    return path is not None and os.path.splitext(os.path.basename(path))[0] != "ipython"


def read_exactly(fd: int, n: int) -> bytes:
    """Read ``n`` bytes from ``fd``, fewer only at EOF (blocks until then)."""
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def read_payload(fd: int) -> bytes:
    """Read a payload framed by ``frame_payload``.

    Length-prefixed rather than read to EOF: a process that another thread of the parent
    forks while this child starts inherits the pipe's write end (close-on-exec does not
    apply to fork), and EOF would then wait for that unrelated process to exit.
    """
    header = read_exactly(fd, 8)
    return read_exactly(fd, int.from_bytes(header, "little")) if len(header) == 8 else b""


def prepare(data: dict[str, Any]) -> None:
    """In a child: adopt the parent's ``sys.path``, ``sys.argv``, cwd and ``__main__``."""
    sys.path[:] = data["sys_path"]
    for name, argument in data.get("preparers", ()):
        __import__(name)
        sys.modules[name].prepare_child(argument)
    sys.argv[:] = data["sys_argv"]
    sys.prefix, sys.exec_prefix = data["prefix"]
    if data["site"] and sys.flags.no_site:
        _defer_site()
    log.adopt(data.get("log_level"), data.get("stderr_log_level"))
    os.chdir(data["dir"])
    start.force_start_method(data["start_method"])
    if not main_is_rerun(data):
        return
    start.importing_main = True
    main = sys.modules["__main__"]
    try:
        if "main_name" in data:
            _run_main_module(data["main_name"])
        else:
            run_main_path(data["main_path"])
    except BaseException:
        # Not half a main: a fork server whose re-run failed lets each child run it
        # again, so the error (a script without the __main__ guard) reaches every child.
        sys.modules["__main__"] = main
        sys.modules.pop("__mp_main__", None)
        raise
    finally:
        start.importing_main = False


_site_deferred = False


def _defer_site() -> None:
    global _site_deferred
    if _site_deferred:
        return  # a forkserver child: its server did this already
    _site_deferred = True
    import site  # noqa: PLC0415 - cheap with -S: main() is not run

    site.setquit()
    site.setcopyright()
    site.sethelper()
    sys.meta_path.append(_SiteOnDemand)


class _SiteOnDemand:
    """Last finder on ``sys.meta_path``: on the first miss, run ``site.main()`` and retry."""

    @classmethod
    def find_spec(cls, name: str, path: Any = None, target: Any = None) -> Any:
        sys.meta_path.remove(cls)
        import site  # noqa: PLC0415 - see module docstring

        site.main()
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(name, path, target) if find_spec else None
            if spec is not None:
                return spec
        return None


def _install_main(module: Any) -> None:
    sys.modules["__main__"] = sys.modules["__mp_main__"] = module


def run_main_path(path: str) -> None:
    main = sys.modules["__main__"]
    if getattr(main, "__file__", None) == path:
        return  # already run (a forkserver child of a server that preloaded it)
    module = type(sys)("__mp_main__")
    if path.endswith((".pyz", ".zip")) or not os.path.isfile(path):
        import runpy  # noqa: PLC0415 - zip apps and directories only

        module.__dict__.update(runpy.run_path(path, run_name="__mp_main__"))
        _install_main(module)
        return
    import io  # noqa: PLC0415 - already loaded at interpreter start-up

    with io.open_code(path) as f:
        code = compile(f.read(), path, "exec")
    module.__file__ = path
    _install_main(module)
    exec(code, module.__dict__)


def _run_main_module(name: str) -> None:
    if getattr(getattr(sys.modules["__main__"], "__spec__", None), "name", None) == name:
        return
    import runpy  # noqa: PLC0415 - only for parents started with -m

    module = type(sys)("__mp_main__")
    module.__dict__.update(runpy.run_module(name, run_name="__mp_main__", alter_sys=True))
    _install_main(module)


def load_and_run(payload: bytes, fds: list[int] | None = None) -> int:
    """In a child: prepare from ``payload``, rebuild the ``Process``, run it; the exit code.

    ``fds`` are the fds that came with the payload, in the order the parent collected
    them; ``None`` means they kept their numbers (spawn), which the payload lists.
    """
    import _pickle  # noqa: PLC0415 - the C unpickler without pickle.py's imports

    data, blob, numbers = _pickle.loads(payload)
    if data is not None:  # None: the child is a copy of its parent (a fork helper's)
        prepare(data)
    if fds is None:
        fds = numbers
    if fds:
        from plait._core.fdpass import FdSupply  # noqa: PLC0415 - only if fds came along

        with FdSupply(fds):
            process_obj = _pickle.loads(blob)
    else:
        process_obj = _pickle.loads(blob)
    return process_obj._bootstrap()


def main(fd: int, lifeline_fd: int) -> None:
    """Entry point of a spawned child (see ``child_command``); never returns."""
    if lifeline_fd >= 0:
        lifeline.arm(lifeline_fd)
    payload = read_payload(fd)
    os.close(fd)
    sys.exit(load_and_run(payload))
