"""Drop-in face of ``threading``: the standard names, from ``plait.threads``.

``from plait import threading`` in place of ``import threading``. Re-exports only; the
code and its explanation are in ``plait/threads/``. The face is a
``plait.threads.interpreter.ThreadingModule``: ``excepthook`` and the thread registry's
private names are live views of the interpreter's state, so assigning
``plait.threading.excepthook`` takes effect for every thread.
"""

import sys

from plait.threads import interpreter, sync, thread
from plait.threads.sync import *  # noqa: F403
from plait.threads.sync import _CRLock, _PyRLock  # noqa: F401 (standard private names)
from plait.threads.thread import *  # noqa: F403
from plait.threads.thread import (  # noqa: F401 (standard names outside __all__)
    _HAVE_THREAD_NATIVE_ID,
    __excepthook__,
    activeCount,
    currentThread,
)

# ``excepthook`` is not a global of this module: ThreadingModule serves it (see the docstring).
__all__ = thread.__all__ + sync.__all__ + ["excepthook"]  # noqa: F405

sys.modules[__name__].__class__ = interpreter.ThreadingModule
