"""The Ray runner: a pool's chunks as Ray tasks, on a local Ray or a given address.

``address=None`` uses the Ray already initialized in this process, or starts a local
one with ``processes`` CPUs (default ``cpu_count()``) and shuts it down when the pool
ends. A string address (``ray://head:10001`` or ``head:6379``) is first probed with a
TCP connection within ``connect_timeout`` seconds (``ray.init`` alone retries an
unreachable head for a minute or more), then passed to ``ray.init``; a failure to
connect is ``SchedulerUnreachableError``.

Each chunk is one Ray task of one CPU running ``run_chunk``. Unlike Ray's own
``ray.util.multiprocessing.Pool``, which fails a whole pool when an actor dies, a task
whose worker died is retried by Ray (``max_retries``, default 3) on a fresh worker
process and, when every attempt lost its worker, fails alone with
``RemoteWorkerLostError``. At a per-task deadline ``ray.cancel(force=True)`` kills the
worker process running the task; Ray starts another for the next task. ``terminate()``
cancels the unfinished tasks the same way, or, when the pool started Ray itself,
shuts that Ray down with every task in it.
``initializer`` is not supported: Ray starts task workers on demand (use a
``runtime_env`` ``worker_process_setup_hook``).
"""

from __future__ import annotations

import socket
from typing import Any

import ray
from ray.exceptions import WorkerCrashedError

from plait.pool.backends.errors import (
    RemoteWorkerLostError,
    SchedulerUnreachableError,
    UnsupportedOptionError,
)
from plait.pool.backends.remote import run_chunk
from plait.process import cpu_count

__all__ = ["RayRunner", "OPTIONS"]

OPTIONS = {"connect_timeout": 10.0, "max_retries": 3}
_GET_SECONDS = 30.0
_CANCEL_GRACE = 0.2  # seconds tasks in flight may finish before a pool's cancel (_cancel)


def _probe(address: str, timeout: float) -> None:
    """Fail within ``timeout`` if nothing listens at a ``[ray://]host:port`` address.

    ``ray.init`` alone keeps retrying an unreachable head for a minute or more.
    """
    where = address.removeprefix("ray://")
    host, sep, port = where.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "local", ...: Ray resolves those itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise SchedulerUnreachableError("ray", address, timeout, str(exc)) from exc


class RayRunner:
    """Run chunks as Ray tasks (see the module docstring); the engine's only peer."""

    def __init__(
        self, address: Any, processes: int | None, initializer, initargs: tuple, options: dict
    ) -> None:
        if initializer is not None:
            raise UnsupportedOptionError(
                "ray", "initializer", "Ray starts task workers on demand; use a runtime_env"
            )
        self._own = False
        if address is not None and not isinstance(address, str):
            raise TypeError(
                "address= of the ray backend must be None or an address string, "
                f"not {type(address).__name__}"
            )
        if ray.is_initialized() and address is not None:
            raise UnsupportedOptionError(
                "ray", f"address={address!r}", "Ray is already initialized in this process"
            )
        if not ray.is_initialized():
            kwargs: dict = {"include_dashboard": False, "log_to_driver": False}
            if address is None:
                kwargs["num_cpus"] = cpu_count() if processes is None else processes
            if address is not None:
                _probe(address, options["connect_timeout"])
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, TimeoutError, RuntimeError) as exc:
                if address is None:
                    raise
                raise SchedulerUnreachableError(
                    "ray", address, options["connect_timeout"], str(exc)
                ) from exc
            self._own = True
        self.slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._task = ray.remote(run_chunk).options(num_cpus=1, max_retries=options["max_retries"])

    def submit(self, payload: bytes, done) -> Any:
        ref = self._task.remote(payload)
        ref.future().add_done_callback(lambda _future: done(ref))
        return ref

    def collect(self, refs: list) -> list:
        out = []
        for ref in refs:
            try:
                out.append((ref, ray.get(ref, timeout=_GET_SECONDS)))
            except Exception as exc:
                out.append((ref, exc))
        return out

    def translate(self, exc: BaseException) -> BaseException:
        if isinstance(exc, WorkerCrashedError):
            lost = RemoteWorkerLostError(
                "ray", None, "Ray retried it and every attempt lost its worker (max_retries)"
            )
            lost.__cause__ = exc
            return lost
        return exc

    def stop(self, ref) -> None:
        self._cancel([ref], 0)  # it ran past its deadline: not about to finish

    def cancel(self, refs: list) -> None:
        if self._own:
            return  # close() shuts this Ray down, and every task with it
        self._cancel(refs, _CANCEL_GRACE)

    def _cancel(self, refs: list, grace: float) -> None:
        # Ray (2.60) aborts the calling process when a cancel crosses the reply of a
        # task that is just finishing ("Check failed: it != submissible_tasks_.end()",
        # ray-project/ray#54527): cancel only what is not finished after `grace`
        # seconds. Tiny tasks in flight (an abandoned imap) then finish instead of being
        # cancelled at the instant they end; a long one is all but never in that instant.
        try:
            _, running = ray.wait(refs, num_returns=len(refs), timeout=grace)
        except Exception:  # Ray is shutting down
            return
        for ref in running:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # finished or gone meanwhile
                pass

    def worker_names(self) -> tuple:
        return tuple(n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive"))

    def close(self) -> None:
        if self._own:
            self._own = False
            ray.shutdown()
