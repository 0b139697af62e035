"""The lowest layer: serialization and the other building blocks every layer shares."""

from plait._core.system import check_platform as _check_platform

_check_platform()  # before any C extension: another system gets one clear error
