"""``Process``: the object a program holds for a child, and the registry of children.

Theory of operation
-------------------
A ``Process`` is built in the parent, started once, and then observed through a *child
handle* made by its start method (``fork.ForkChild``, ``spawn.SpawnChild``,
``forkserver.ForkServerChild``). The handle owns the OS resources: the pid, the sentinel
fd that becomes readable when the child is gone, and the exit status once it is known.
Everything here (``join``, ``is_alive``, ``exitcode``, ``terminate``) delegates to it.

In the child the same object (inherited by ``fork``, unpickled under ``spawn`` and
``forkserver``) becomes ``current_process()``; ``_bootstrap`` runs ``run()``, turns the
way it ended into an exit code exactly as ``multiprocessing`` does (``sys.exit(n)`` gives
``n``, an exception prints ``Process <name>:`` and its traceback and gives 1), waits
for the child's own non-daemon threads and children, flushes stdio and returns the code
for the start method to pass to ``os._exit``.

Invariants
----------
- Every started child is in ``_children`` until it has been reaped (``join``,
  ``is_alive``, ``exitcode`` or ``active_children`` saw it finish), so no zombie outlives
  the next ``start`` or ``active_children`` call, and the ``atexit`` hook reaps the rest:
  it terminates daemon children and joins every child, as ``multiprocessing`` does.
- Misuse raises what ``multiprocessing`` raises, with its messages: ``AssertionError``
  for starting twice or joining an unstarted process (raised explicitly, so ``-O``
  does not remove the checks), ``ValueError`` for a closed process object.
- Daemon children also die when their parent dies without running ``atexit`` (SIGKILL,
  ``os._exit``): see ``lifeline``.
"""

from __future__ import annotations

import itertools
import os
import sys
from _weakrefset import WeakSet

from plait.process import interop, log
from plait.process import start as _start
from plait.process.child import flush_std_streams, wait_readable

# Annotations only: importing typing would cost every child ~10 ms (see spawn).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

__all__ = [
    "Process",
    "ForkProcess",
    "SpawnProcess",
    "ForkServerProcess",
    "current_process",
    "parent_process",
    "active_children",
]


_NOT_BOOTSTRAPPED = """
        An attempt has been made to start a new process before the
        current process has finished its bootstrapping phase.

        This probably means that you are not using fork to start your
        child processes and you have forgotten to use the proper idiom
        in the main module:

            if __name__ == '__main__':
                freeze_support()
                ...

        The "freeze_support()" line can be omitted if the program
        is not going to be frozen to produce an executable."""


def _child_handle(process_obj: Process) -> Any:
    """Start ``process_obj`` with its start method; return the handle of the child."""
    method = process_obj._start_method or _start.get_start_method()
    try:
        handle = _handles[method]
    except KeyError:
        handle = _handles[method] = _load_handle(method)
    return handle(process_obj)


# Start method -> handle class, filled on first use (an import statement per start would
# cost a forked child's parent copy-on-write faults in the import machinery).
_handles: dict[str, Any] = {}


def _load_handle(method: str) -> Any:
    if method == "fork":
        from plait.process.fork import start_child  # noqa: PLC0415 - on first use

        return start_child
    if method == "spawn":
        from plait.process.spawn import SpawnChild  # noqa: PLC0415 - on first use

        return SpawnChild
    from plait.process.forkserver import ForkServerChild  # noqa: PLC0415 - on first use

    return ForkServerChild


def _fail(message: str) -> None:
    raise AssertionError(message)


class Process:
    """A child process that runs ``target(*args, **kwargs)``, or ``run()`` of a subclass.

    The interface is ``multiprocessing.Process``'s: ``start``, ``join``, ``is_alive``,
    ``terminate``, ``kill``, ``close`` and the attributes ``name``, ``daemon``, ``pid``,
    ``ident``, ``exitcode``, ``sentinel`` and ``authkey``. The start method is the
    default one (see ``set_start_method``) unless the class comes from a context
    (``get_context("spawn").Process``).

    >>> import sys
    >>> p = Process(target=sys.exit, args=(3,))
    >>> p.start(); p.join(timeout=5)
    >>> p.exitcode
    3
    >>> p.close()
    """

    _start_method: str | None = None

    def __init__(
        self,
        group: None = None,
        target: Callable[..., object] | None = None,
        name: str | None = None,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        daemon: bool | None = None,
    ) -> None:
        if group is not None:
            _fail("group argument must be None for now")
        count = next(_counter)
        self._identity = _current_process._identity + (count,)
        self._config = _current_process._config.copy()
        self._parent_pid = os.getpid()
        self._parent_name = _current_process.name
        self._popen = None
        self._closed = False
        self._target = target
        self._args = tuple(args)
        self._kwargs = dict(kwargs or {})
        self._name = name or f"{type(self).__name__}-{':'.join(map(str, self._identity))}"
        if daemon is not None:
            self.daemon = daemon

    def run(self) -> None:
        """The body of the child: calls the target. Subclasses override it."""
        if self._target:
            self._target(*self._args, **self._kwargs)

    def start(self) -> None:
        """Start the child; returns once its pid is known.

        Raises ``AssertionError`` if the process was already started, was created by
        another process, or if the caller is a daemon process; ``ValueError`` if closed;
        ``pickle.PicklingError`` if spawn/forkserver cannot serialize the object.
        """
        self._check_closed()
        if self._popen is not None:
            _fail("cannot start a process twice")
        if self._parent_pid != os.getpid():
            _fail("can only start a process object created by current process")
        if _current_process._config.get("daemon"):
            _fail("daemonic processes are not allowed to have children")
        if _start.importing_main:
            raise RuntimeError(_NOT_BOOTSTRAPPED)
        _cleanup()
        self._popen = _child_handle(self)
        self._sentinel = self._popen.sentinel
        # The child has its own copy; dropping ours frees what the target holds.
        del self._target, self._args, self._kwargs
        _children.add(self)
        _dangling.add(self)
        _register_exit_hook()

    def join(self, timeout: float | None = None) -> None:
        """Wait until the child ends, or ``timeout`` seconds pass (``None``: no limit).

        Blocks up to ``timeout``; a negative timeout does not wait. Check ``exitcode``
        (still ``None``) to tell a timeout from an exit. Raises ``AssertionError`` if
        the process was not started or is not a child of the caller.
        """
        self._check_closed()
        if self._parent_pid != os.getpid():
            _fail("can only join a child process")
        if self._popen is None:
            _fail("can only join a started process")
        if self._popen.wait(timeout) is not None:
            _children.discard(self)

    def is_alive(self) -> bool:
        """Whether the child has started and not yet ended (reaps it if it ended)."""
        self._check_closed()
        if self is _current_process:
            return True
        if self._parent_pid != os.getpid():
            _fail("can only test a child process")
        if self._popen is None:
            return False
        if self._popen.poll() is None:
            return True
        _children.discard(self)
        return False

    def interrupt(self) -> None:
        """Send SIGINT to the child (nothing if it already ended); does not wait.

        Python 3.14's ``Process.interrupt``, on every version: the child's default
        handler raises ``KeyboardInterrupt`` there.
        """
        self._check_closed()
        self._popen.interrupt()

    def terminate(self) -> None:
        """Send SIGTERM to the child (nothing if it already ended); does not wait."""
        self._check_closed()
        self._popen.terminate()

    def kill(self) -> None:
        """Send SIGKILL to the child (nothing if it already ended); does not wait."""
        self._check_closed()
        self._popen.kill()

    def close(self) -> None:
        """Release the sentinel and other resources of an ended child.

        Raises ``ValueError`` if the child is still running. Afterwards most methods and
        attributes raise ``ValueError``.
        """
        if self._popen is not None:
            if self._popen.poll() is None:
                raise ValueError(
                    "Cannot close a process while it is still running. "
                    "You should first call join() or terminate()."
                )
            self._popen.close()
            self._popen = None
            del self._sentinel
            _children.discard(self)
        self._closed = True

    def _check_closed(self) -> None:
        if self._closed:
            raise ValueError("process object is closed")

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, name: str) -> None:
        if not isinstance(name, str):
            _fail("name must be a string")
        self._name = name

    @property
    def daemon(self) -> bool:
        """Whether the child is killed when this process exits (set before ``start``)."""
        return self._config.get("daemon", False)

    @daemon.setter
    def daemon(self, daemonic: bool) -> None:
        if self._popen is not None:
            _fail("process has already started")
        self._config["daemon"] = daemonic

    @property
    def authkey(self) -> bytes:
        """The key ``Listener``/``Client`` use by default; children inherit it."""
        return self._config["authkey"]

    @authkey.setter
    def authkey(self, authkey: bytes) -> None:
        self._config["authkey"] = bytes(authkey)

    @property
    def exitcode(self) -> int | None:
        """``None`` while running or not started; else the exit code, -N for signal N."""
        self._check_closed()
        if self._popen is None:
            return None
        return self._popen.poll()

    @property
    def ident(self) -> int | None:
        """The pid (``None`` before ``start``)."""
        self._check_closed()
        if self is _current_process:
            return os.getpid()
        return self._popen and self._popen.pid

    pid = ident

    @property
    def sentinel(self) -> int:
        """An fd that becomes readable when the child ends; for ``select``/``poll``/``wait``.

        Raises ``ValueError`` before ``start``.
        """
        self._check_closed()
        try:
            return self._sentinel
        except AttributeError:
            raise ValueError("process not started") from None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_popen"] = None
        state.pop("_sentinel", None)
        return state

    def __repr__(self) -> str:
        exitcode = None
        if self is _current_process:
            status = "started"
        elif self._closed:
            status = "closed"
        elif self._parent_pid != os.getpid():
            status = "unknown"
        elif self._popen is None:
            status = "initial"
        else:
            exitcode = self._popen.poll()
            status = "started" if exitcode is None else "stopped"
        info = [type(self).__name__, f"name={self._name!r}"]
        if self._popen is not None:
            info.append(f"pid={self._popen.pid}")
        info.append(f"parent={self._parent_pid}")
        info.append(status)
        if exitcode is not None:
            info.append(f"exitcode={_exitcode_name(exitcode)}")
        if self.daemon:
            info.append("daemon")
        return f"<{' '.join(info)}>"

    def _bootstrap(self) -> int:
        """Run in the child: become ``current_process()``, run, return the exit code."""
        global _current_process, _parent_process, _counter, _children, _exiting
        try:
            _counter = itertools.count(1)
            _exiting = False
            _children = set()
            _parent_process = None  # built on first use: a forked child pays per object
            _current_process = self
            if self._start_method is not None:
                _start.force_start_method(self._start_method)
            threading = sys.modules.get("threading")
            if threading is not None:  # a forked main thread keeps its parent's native id
                threading.main_thread()._set_native_id()
            hooks = sys.modules.get("plait.process.hooks")
            if hooks is not None:
                hooks.child_started()
            interop.child_started()  # standard objects inherited, if any
            log.info("child process calling self.run()")
            try:
                self.run()
                exitcode = 0
            finally:
                _exit_function()
        except SystemExit as e:
            if e.code is None:
                exitcode = 0
            elif isinstance(e.code, int):
                exitcode = e.code
            else:
                sys.stderr.write(f"{e.code}\n")
                exitcode = 1
        except BaseException:
            exitcode = 1
            import traceback  # noqa: PLC0415 - only a failing child pays for it

            sys.stderr.write(f"Process {self.name}:\n")
            traceback.print_exc()
        finally:
            _wait_for_threads()
            log.info("process exiting with exitcode %d", exitcode)
            flush_std_streams()
        return exitcode


# The process classes of the contexts (``get_context("spawn").Process``). They live here,
# not with the contexts: a spawned child unpickles its Process by class, and the context
# module imports ``multiprocessing`` (its classes subclass the standard BaseContext).
class ForkProcess(Process):
    """A ``Process`` that always starts with ``fork``."""

    _start_method = "fork"


class SpawnProcess(Process):
    """A ``Process`` that always starts with ``spawn``."""

    _start_method = "spawn"


class ForkServerProcess(Process):
    """A ``Process`` that always starts with ``forkserver``."""

    _start_method = "forkserver"


class _MainProcess(Process):
    """``current_process()`` of a program that was not started by plait."""

    def __init__(self) -> None:
        self._identity = ()
        self._name = "MainProcess"
        self._parent_pid = None
        self._popen = None
        self._closed = False
        self._config = {"authkey": os.urandom(32), "semprefix": "/mp"}

    def close(self) -> None:
        """The main process has nothing to close."""


class _ParentProcess(Process):
    """``parent_process()`` in a child: name and pid, ``is_alive`` and a sentinel."""

    def __init__(self, name: str, pid: int) -> None:
        self._identity = ()
        self._name = name
        self._pid = pid
        self._parent_pid = None
        self._popen = None
        self._closed = False
        self._config = {}

    def is_alive(self) -> bool:
        """Whether the parent still runs (a pidfd poll; never blocks)."""
        return not wait_readable(self.sentinel, 0)

    def join(self, timeout: float | None = None) -> None:
        """Wait until the parent ends, or ``timeout`` seconds pass (``None``: no limit)."""
        wait_readable(self.sentinel, timeout)

    @property
    def ident(self) -> int:
        return self._pid

    pid = ident

    @property
    def sentinel(self) -> int:
        """A pidfd of the parent, opened on first use; readable once the parent ended."""
        try:
            return self._sentinel
        except AttributeError:
            self._sentinel = os.pidfd_open(self._pid)
            return self._sentinel


def _exitcode_name(exitcode: int) -> str:
    """``-SIGTERM`` for -15, as ``multiprocessing`` prints it; other codes as numbers."""
    if exitcode < 0:
        import signal  # noqa: PLC0415 - signal imports enum: ~4 ms a spawned child avoids

        try:
            return f"-{signal.Signals(-exitcode).name}"
        except ValueError:
            pass
    return str(exitcode)


def current_process() -> Process:
    """The ``Process`` object of the calling process (``MainProcess`` at the top)."""
    return _current_process


def _process_name() -> str:
    return _current_process.name


log.process_name = _process_name


def parent_process() -> Process | None:
    """The parent of the calling process, or ``None`` in a process plait did not start."""
    global _parent_process
    if _parent_process is None and _current_process._parent_pid is not None:
        me = _current_process
        _parent_process = _ParentProcess(me._parent_name, me._parent_pid)
    return _parent_process


def _wait_for_threads() -> None:
    """Wait for the non-daemon threads of the child, as the interpreter does at exit.

    ``threading._shutdown`` costs a forked child ~60 us of copy-on-write faults even with
    no thread to wait for; the set of non-daemon thread locks tells whether there is one.
    """
    threading = sys.modules.get("threading")
    if threading is not None and getattr(threading, "_shutdown_locks", True):
        threading._shutdown()


def active_children() -> list[Process]:
    """The children started by this process that are still running; reaps ended ones.

    Never blocks: each child is polled once (``waitpid(WNOHANG)``).
    """
    _cleanup()
    return list(_children)


def _cleanup() -> None:
    for p in list(_children):
        if p._popen is not None and p._popen.poll() is not None:
            _children.discard(p)


_exiting = False
_exit_hook_registered = False


def _register_exit_hook() -> None:
    global _exit_hook_registered
    if not _exit_hook_registered:
        import atexit  # noqa: PLC0415 - a builtin module; only parents need it

        atexit.register(_exit_function)
        _exit_hook_registered = True


def _exit_function() -> None:
    """At exit: run the finalizers of priority >= 0 (see ``hooks``), terminate daemon
    children, join every child (reaping them all), then run the other finalizers."""
    global _exiting
    if _exiting:
        return
    hooks = sys.modules.get("plait.process.hooks")  # loaded only if a program uses it
    # The standard module's finalizers: its own exit hook runs them in a program it did
    # not start, but a plait child leaves through os._exit, so here they run with ours.
    in_child = _current_process._parent_pid is not None
    standard = interop if in_child and "multiprocessing.util" in sys.modules else None
    if hooks is None and standard is None and not _children:
        return
    _exiting = True
    log.info("process shutting down")
    for finalizers in (hooks, standard):
        if finalizers is not None:
            finalizers.run_finalizers(0)
    # A child's owner (a pool's thread) may reap and close it meanwhile: skip it then.
    for p in active_children():
        popen = p._popen
        if p.daemon and popen is not None:
            log.info("calling terminate() for daemon %s", p.name)
            popen.terminate()
    for p in active_children():
        log.info("calling join() for process %s", p.name)
        try:
            p.join()
        except ValueError:
            if not p._closed:
                raise
    for finalizers in (hooks, standard):
        if finalizers is not None:
            finalizers.run_finalizers()


_current_process: Process = _MainProcess()
_parent_process: Process | None = None
_counter = itertools.count(1)
_children: set[Process] = set()
# Every started Process object not yet garbage collected (multiprocessing's test suites
# read it to find processes a test left behind).
_dangling: WeakSet = WeakSet()
