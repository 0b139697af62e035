"""Drop-in face of ``multiprocessing.sharedctypes``; the code lives in ``plait.ipc``."""

from plait.ipc.sharedctypes import Array, RawArray, RawValue, Value, copy, synchronized

__all__ = ["Array", "RawArray", "RawValue", "Value", "copy", "synchronized"]
