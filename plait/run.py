"""``python -m plait run``: a program run as ``python`` would run it, under ``patch()``.

``python -m plait run script.py args...`` and ``python -m plait run -m module args...``
call ``plait.patch()`` and then run the program the way the interpreter runs
``python script.py args...`` or ``python -m module args...``:

- ``sys.argv`` is the program's (the script's path, or the module's file, then its
  arguments) and ``sys.path[0]`` is the script's directory (for ``-m``, the current
  directory, as ``python -m`` has it);
- the program runs as ``__main__``, so its ``if __name__ == "__main__":`` block runs and
  its spawned children re-run it as ``__mp_main__`` (and are patched before they do);
- the exit code is the program's: ``sys.exit(n)`` gives ``n``; an uncaught exception
  prints its traceback, starting at the program's own frames as the interpreter's does
  (the frames of plait and ``runpy`` that started it are left out), and exits with 1;
  an uncaught ``KeyboardInterrupt`` ends the process by SIGINT, as the interpreter does.
"""

from __future__ import annotations

import builtins
import os
import runpy
import signal
import sys
import types
from types import TracebackType

__all__ = ["run_program"]

USAGE = "usage: python -m plait run script.py [args...] | -m module [args...]"


def run_program(argv: list[str]) -> int:
    """Run the program ``argv`` names (``["script.py", ...]`` or ``["-m", "module", ...]``)
    under ``plait.patch()``; return 0 when it ends normally (``sys.exit`` propagates).

    Raises ``SystemExit(2)`` with the usage for an empty ``argv`` or a bare ``-m``.
    """
    if not argv or argv == ["-m"]:
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)
    from plait import patch  # noqa: PLC0415 - the module is callable: see plait.patch

    patch.patch()
    try:
        if argv[0] == "-m":
            sys.argv[:] = [argv[1], *argv[2:]]  # runpy puts the module's file in argv[0]
            sys.path[0] = os.getcwd()
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv[:] = argv
            sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
            _run_path(argv[0])
    except SystemExit:
        raise
    except BaseException as exc:  # what the interpreter does with an uncaught exception
        exc.__traceback__ = _program_frames(exc.__traceback__)
        sys.excepthook(type(exc), exc, exc.__traceback__)
        if isinstance(exc, KeyboardInterrupt):
            sys.stdout.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        return 1
    return 0


def _run_path(path: str) -> None:
    """Run the script ``path`` as the interpreter runs its main script: a new
    ``__main__`` module (it stays in ``sys.modules``) whose ``__file__`` and code
    name the absolute path, while ``sys.argv[0]`` stays as typed. A directory or zip
    with a ``__main__.py`` goes through ``runpy``."""
    absolute = os.path.abspath(path)
    if not os.path.isfile(absolute) or absolute.endswith((".zip", ".pyz")):
        runpy.run_path(path, run_name="__main__")
        return
    import importlib.machinery  # noqa: PLC0415 - already loaded by the interpreter
    import io  # noqa: PLC0415

    with io.open_code(absolute) as f:
        code = compile(f.read(), absolute, "exec")
    main = types.ModuleType("__main__")
    main.__file__ = absolute
    main.__loader__ = importlib.machinery.SourceFileLoader("__main__", absolute)
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    exec(code, main.__dict__)


def _program_frames(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` without its leading frames of plait's launcher and of ``runpy``."""
    plait_dir = os.path.dirname(__file__) + os.sep

    def launcher(filename: str) -> bool:
        return (
            filename.startswith(plait_dir)
            or filename == runpy.__file__
            or filename.startswith("<frozen runpy")
        )

    while tb is not None and launcher(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return tb
