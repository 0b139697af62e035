"""plait: concurrent Python on operating-system primitives.

The layers (see DESIGN.md): ``plait._core`` (serialization, framing), ``plait.process``
(processes and start methods), ``plait.ipc`` (connections, listeners), and the drop-in
face ``plait.multiprocessing``. Importing ``plait`` imports none of them, so that a child
process pays only for what it uses; ``plait.patch()`` (``plait/patch.py``) and its kin are
imported when first named.
"""

import sys

__version__ = "0.1.0"

__all__ = [
    "PatchWarning",
    "SoftTimeoutError",
    "__version__",
    "patch",
    "patched",
    "patched_modules",
    "unpatch",
]

_PATCH_NAMES = frozenset({"PatchWarning", "patch", "patched", "patched_modules", "unpatch"})


def __getattr__(name: str) -> object:
    """``plait.patch()`` and its kin, imported from ``plait.patch`` on first use. The
    module ``plait.patch`` is itself callable as ``patch()`` (the import system binds the
    submodule to the package's ``patch`` attribute, so the function could not stay there)."""
    if name in _PATCH_NAMES:
        __import__("plait.patch")
        module = sys.modules["plait.patch"]
        return module if name == "patch" else getattr(module, name)
    if name == "SoftTimeoutError":  # raised inside a pool's task at its soft timeout
        return __import__("plait.pool.errors", fromlist=[name]).SoftTimeoutError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
