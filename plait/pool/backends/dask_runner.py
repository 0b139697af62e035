"""The Dask runner: a pool's chunks as tasks of a Dask distributed cluster.

``address=None`` starts a ``LocalCluster`` for the pool (one single-threaded worker
process per ``processes``, each under a nanny that restarts it when it dies) and stops
it when the pool ends. A string address connects a ``Client`` to a running scheduler
(``tcp://scheduler:8786``) within ``connect_timeout`` seconds, or fails with
``SchedulerUnreachableError``; a ``distributed.Client`` is used as it is. The pool
closes what it opened and nothing else: a cluster given by address keeps running.

Each chunk is ``client.submit(run_chunk, payload, pure=False)``: ``pure=False`` spares
Dask hashing the payload for a key it would never reuse. Finished futures report
through ``add_done_callback`` (Dask runs those on its callback thread) and are
fetched together with one ``client.gather``.

A task that kills its worker is retried by Dask on another worker until
``distributed.scheduler.allowed-failures`` (default 3) attempts lost theirs; then Dask
raises ``KilledWorker``, which the pool reports as ``RemoteWorkerLostError``. At a
per-task deadline the future is cancelled and the worker process running the task is
SIGKILLed (a thread cannot be stopped; a graceful ``restart_workers`` waits seconds for
the task first, while Dask hands the "idle" worker more tasks); its nanny starts a new
one, and Dask retries elsewhere what else ran there. This happens in a thread of this
runner, so the engine never waits for it. A worker without a nanny is not restarted.

``initializer`` runs on every worker, present and future, as a worker plugin removed
again when the pool closes.
"""

from __future__ import annotations

import os
import signal
import threading
import uuid
from typing import Any

from distributed import Client, KilledWorker, LocalCluster, WorkerPlugin

from plait._core import serialization
from plait.pool.backends.errors import (
    RemoteWorkerLostError,
    SchedulerUnreachableError,
    UnsupportedOptionError,
)
from plait.pool.backends.remote import run_chunk
from plait.process import cpu_count

__all__ = ["DaskRunner", "OPTIONS"]

OPTIONS = {"connect_timeout": 10.0}
_STOP_SECONDS = 30.0


class _Initializer(WorkerPlugin):
    """Runs the pool's ``initializer(*initargs)`` when a worker starts (or already runs)."""

    def __init__(self, call: bytes) -> None:
        self.call = call

    def setup(self, worker) -> None:
        initializer, initargs = serialization.loads(self.call)
        initializer(*initargs)


def _kill_soon() -> None:
    """On a worker: SIGKILL this worker process just after this call has answered."""
    killer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGKILL))
    killer.daemon = True
    killer.start()


def _processing_on(dask_scheduler, key) -> str | None:
    """On the scheduler: the address of the worker processing ``key``, or None."""
    task = dask_scheduler.tasks.get(key)
    where = None if task is None else task.processing_on
    return None if where is None else where.address


class DaskRunner:
    """Run chunks on a Dask cluster (see the module docstring); the engine's only peer."""

    def __init__(
        self,
        address: Any,
        processes: int | None,
        initializer,
        initargs: tuple,
        options: dict,
    ) -> None:
        self._cluster = None
        self._own_client = True
        self._plugin: str | None = None
        self._stoppers: list[threading.Thread] = []
        if isinstance(address, Client):
            self._client = address
            self._own_client = False
        elif address is None:
            workers = cpu_count() if processes is None else processes
            self._cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
            )
            try:
                self._client = Client(self._cluster, set_as_default=False)
            except BaseException:
                self._cluster.close()
                raise
        elif isinstance(address, str):
            timeout = options["connect_timeout"]
            try:
                self._client = Client(address, timeout=timeout, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise SchedulerUnreachableError("dask", address, timeout, str(exc)) from exc
        else:
            raise TypeError(
                "address= of the dask backend must be None, a scheduler address string "
                f"or a distributed.Client, not {type(address).__name__}"
            )
        try:
            self.slots = sum(self._client.nthreads().values())
            if self.slots < 1:
                raise UnsupportedOptionError(
                    "dask", f"address={address!r}", "the cluster has no workers"
                )
            if initializer is not None:
                self._plugin = f"plait-initializer-{uuid.uuid4().hex}"
                plugin = _Initializer(serialization.dumps((initializer, initargs)))
                self._client.register_plugin(plugin, name=self._plugin)
        except BaseException:
            self.close()
            raise

    def submit(self, payload: bytes, done) -> Any:
        future = self._client.submit(run_chunk, payload, pure=False)
        future.add_done_callback(done)
        return future

    def collect(self, futures: list) -> list:
        finished = [f for f in futures if f.status == "finished"]
        out = []
        if finished:
            try:
                out.extend(zip(finished, self._client.gather(finished), strict=True))
            except Exception:
                out.extend((f, self._outcome(f)) for f in finished)
        out.extend((f, self._outcome(f)) for f in futures if f.status != "finished")
        return out

    @staticmethod
    def _outcome(future) -> Any:
        try:
            return future.result(timeout=_STOP_SECONDS)
        except BaseException as exc:
            return exc

    def translate(self, exc: BaseException) -> BaseException:
        if isinstance(exc, KilledWorker):
            last = exc.last_worker
            address = getattr(last, "address", str(last))
            detail = (
                f"Dask ran it on {exc.allowed_failures + 1} workers and lost each one "
                "(distributed.scheduler.allowed-failures)"
            )
            lost = RemoteWorkerLostError(address, getattr(last, "pid", None), detail)
            lost.__cause__ = exc
            return lost
        return exc

    def stop(self, future) -> None:
        stopper = threading.Thread(
            target=self._restart_worker_of, args=(future,), name="plait-dask-stop", daemon=True
        )
        self._stoppers.append(stopper)
        stopper.start()

    def _restart_worker_of(self, future) -> None:
        client = self._client
        try:
            address = client.run_on_scheduler(_processing_on, key=future.key)
            future.cancel()
            if address is not None:
                client.run(_kill_soon, workers=[address])
        except Exception:  # the client is closing, or the worker is already gone
            pass

    def cancel(self, futures: list) -> None:
        try:
            self._client.cancel(futures, force=True)
        except Exception:  # the client is already closed
            pass

    def worker_names(self) -> tuple:
        try:
            return tuple(self._client.scheduler_info()["workers"])
        except Exception:
            return ()

    def close(self) -> None:
        for stopper in self._stoppers:
            stopper.join(_STOP_SECONDS)
        self._stoppers.clear()
        client = getattr(self, "_client", None)
        if client is not None and self._plugin is not None:
            try:
                client.unregister_worker_plugin(self._plugin)
            except Exception:  # the cluster is gone: so is the plugin
                pass
            self._plugin = None
        if client is not None and self._own_client:
            client.close(timeout=_STOP_SECONDS)
        if self._cluster is not None:
            self._cluster.close(timeout=_STOP_SECONDS)
            self._cluster = None
