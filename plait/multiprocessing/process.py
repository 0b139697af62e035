"""Drop-in face of ``multiprocessing.process``; the code lives in ``plait.process``.

``BaseProcess`` is plait's ``Process`` (every start method's process class derives
from it, as in the standard module).
"""

from plait.process import process as _process
from plait.process.process import Process as BaseProcess
from plait.process.process import _cleanup as _cleanup
from plait.process.process import active_children, current_process, parent_process

__all__ = ["BaseProcess", "current_process", "active_children", "parent_process"]

_dangling = _process._dangling
