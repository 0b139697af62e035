"""Build plait's C extensions; metadata is in pyproject.toml.

``_queue``: the thread-queue engine. ``_sync``: futex locks and semaphores in shared
memory. ``_ring``: the shared-memory ring buffer of the cross-process queues.
"""

from setuptools import Extension, setup

_FLAGS = ["-Wall", "-Wno-missing-field-initializers"]

setup(
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
    ]
)
