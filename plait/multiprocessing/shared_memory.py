"""Drop-in face of ``multiprocessing.shared_memory``: the module ``plait.ipc.shared_memory``
itself.

The face is not a module of re-exports but the implementation module under a second
name, so that what programs and their tests do to the standard module's private hooks
(``unittest.mock.patch("multiprocessing.shared_memory._make_filename")``) reaches the
code that calls them. Its public names are ``SharedMemory`` and ``ShareableList``.
"""

import sys

from plait.ipc import shared_memory

sys.modules[__name__] = shared_memory
