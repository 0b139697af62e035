"""Build the one C extension of plait (the thread-queue engine); metadata is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "plait._core._queue",
            sources=["plait/_core/_queue.c"],
            extra_compile_args=["-Wall", "-Wno-missing-field-initializers"],
        )
    ]
)
