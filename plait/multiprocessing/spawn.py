"""Drop-in face of ``multiprocessing.spawn``; the code lives in ``plait.process.spawn``."""

from plait.process.context import freeze_support
from plait.process.spawn import (
    get_command_line,
    get_executable,
    get_preparation_data,
    import_main_path,
    set_executable,
)
from plait.process.spawn import is_forking as is_forking
from plait.process.spawn import prepare as prepare
from plait.process.spawn import spawn_main as _main
from plait.process.spawn import spawn_main as spawn_main

WINEXE = False
WINSERVICE = False

__all__ = [
    "_main",
    "freeze_support",
    "set_executable",
    "get_executable",
    "get_preparation_data",
    "get_command_line",
    "import_main_path",
]
