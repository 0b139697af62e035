"""Build plait's C extensions and its ``.pth`` hook; metadata is in pyproject.toml.

``_queue``: the thread-queue engine. ``_sync``: futex locks and semaphores in shared
memory. ``_ring``: the shared-memory ring buffer of the cross-process queues. ``_coro``: the hot path of ``plait.coro`` (socket
operations, the kernel's readiness step); ``plait.coro`` runs the same in Python without it.

``plait-patch.pth`` goes to site-packages beside the package, in the wheel and in an
editable install alike: with ``PLAIT_PATCH`` set, every interpreter that starts there
runs under ``plait.patch()`` (``plait.patch.from_environment``). Unset, the line costs one
dictionary lookup: ``os`` is already imported when ``site`` reads ``.pth`` files.
"""

import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH_NAME = "plait-patch.pth"
PTH_LINE = (
    "import os; os.environ.get('PLAIT_PATCH') and "
    "__import__('plait.patch').patch.from_environment()\n"
)


class BuildPy(build_py):
    """Put the hook at the root of the wheel (site-packages once installed)."""

    def run(self) -> None:
        super().run()
        Path(self.build_lib, PTH_NAME).write_text(PTH_LINE)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib, PTH_NAME))]


class EditableWheel(editable_wheel):
    """The same for ``pip install -e``: every file of this directory goes to the root of
    the editable wheel, beside setuptools' own path hook."""

    def _install_namespaces(self, installation_dir: str, pth_prefix: str) -> None:
        super()._install_namespaces(installation_dir, pth_prefix)
        Path(installation_dir, PTH_NAME).write_text(PTH_LINE)


_FLAGS = ["-Wall", "-Wno-missing-field-initializers"]

# The C cores use Linux system calls (futex, memfd). Elsewhere plait installs without
# them and its import raises one ImportError that names what is missing
# (plait._core.system), instead of the build failing in a compiler.
ON_LINUX = sys.platform.startswith("linux")

setup(
    cmdclass={"build_py": BuildPy, "editable_wheel": EditableWheel},
    ext_modules=[
        Extension(
            "plait._core._queue", sources=["plait/_core/_queue.c"], extra_compile_args=_FLAGS
        ),
        Extension(
            "plait._core._sync",
            sources=["plait/_core/_sync.c"],
            depends=["plait/_core/_futex.h"],
            extra_compile_args=_FLAGS,
        ),
        Extension(
            "plait._core._ring",
            sources=["plait/_core/_ring.c"],
            depends=["plait/_core/_futex.h"],
            extra_compile_args=_FLAGS,
        ),
        Extension("plait._core._coro", sources=["plait/_core/_coro.c"], extra_compile_args=_FLAGS),
    ]
    if ON_LINUX
    else [],
)
