"""The lowest layer: serialization and the other building blocks every layer shares."""

from plait._core.system import check as _check

_check()  # before any C extension: a system plait cannot run on gets one clear error
