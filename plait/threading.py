"""Drop-in face of ``threading``: the standard names, from ``plait.threads``.

``from plait import threading`` in place of ``import threading``. Re-exports only; the
code and its explanation are in ``plait/threads/``.
"""

from plait.threads import sync, thread
from plait.threads.sync import *  # noqa: F403
from plait.threads.thread import *  # noqa: F403

__all__ = thread.__all__ + sync.__all__
