"""plait: concurrent Python on operating-system primitives.

The layers (see DESIGN.md): ``plait._core`` (serialization, framing), ``plait.process``
(processes and start methods), ``plait.ipc`` (connections, listeners), and the drop-in
face ``plait.multiprocessing``. Importing ``plait`` imports none of them, so that a child
process pays only for what it uses.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
