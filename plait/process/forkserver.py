"""The ``forkserver`` start method: a small server process forks the children.

Theory of operation
-------------------
The first ``forkserver`` start in a process spawns the *server*: a lean interpreter
(the same ``-S`` child command as ``spawn``) that imports the child bootstrap, applies
the parent's preparation data once (``sys.path``, cwd, and the parent's ``__main__``
re-run as ``__mp_main__``, which ``multiprocessing`` calls preloading ``__main__``), and
then waits on one ``SOCK_SEQPACKET`` socketpair, the *control* socket. Forking that
small, already prepared process is fast, and the child inherits nothing of the parent
but what it is sent.

A start, seen from the parent (``ForkServerChild``):

1. make a stream socketpair ``(mine, theirs)`` for this child;
2. send ``theirs`` (and, for a daemon, a fresh lifeline reader; and the fds that objects
   among the arguments own, see ``plait._core.fdpass``) to the server with
   ``SCM_RIGHTS`` in one control message: one ``sendmsg`` on a seqpacket socket is one
   record, so threads that start processes at once need no lock;
3. write the payload (``spawn.dumps_payload``) to ``mine``; read the child's pid (8 bytes).

The server forks per request. The child closes every fd of the server (control socket,
the other children's sockets and pidfds), reads its payload from ``theirs``, runs the
``Process`` and ``os._exit``s. The server writes the pid to ``theirs``, watches the
child's pidfd, and when the child ends reaps it and writes the exit code (4 bytes) to
``theirs`` and closes it. So ``mine`` is the sentinel: it becomes readable exactly when
the exit code is there to read. If the server dies, ``mine`` reads EOF and the exit code
is 255, as in ``multiprocessing``.

A request that fails does not end the server: if ``fork`` fails (``EAGAIN`` at the
process limit) or ``pidfd_open`` does (``EMFILE``; the child just forked is then killed
and reaped), the server writes the negated errno in place of the pid, closes ``theirs``
and serves the next request; the parent raises ``OSError`` with that errno, as a failed
``os.fork`` would in the ``fork`` method.

Who can make the server fork: only the process that started it. The control socket is
one end of a socketpair, so it has no address: no other process can connect to it, it
can only hold it. The parent's end is close-on-exec, and an at-fork hook closes it in
any process forked from the parent (which starts its own server when it needs one); the
server's end, handed over at ``posix_spawn``, is made close-on-exec again as the server
starts, and every child the server forks closes it first thing. So an fd is the key, and
no process but the parent has it. ``multiprocessing``'s server listens on a named Unix
socket that any local process can connect to, which is why 3.14 gave it an ``authkey``
and an HMAC handshake per connection; here there is no connection to authenticate, and a
key would travel with the socket anyway (a process that can steal one can read the
other). The same holds for the fork helpers below.

Lifetime: the server exits when the control socket reports EOF, that is when the parent
is gone, however it died. ``stop_server`` ends the server on demand (tests use it to
prove nothing leaks). A server that died is replaced by the next start.

Fork helpers
------------
``fork`` from a process that runs threads copies locks that other threads may hold at
that instant; the child can deadlock on them, and Python 3.12+ warns. A pool on ``fork``
runs a scheduler thread, and must still start replacement workers that look like the
first ones. A ``ForkHelper`` is the same server *forked* from the process instead of
spawned: made while the process runs one thread (a pool makes it before it starts its
thread), it is a copy of the process at that moment, with nothing to prepare. The pool
then starts its workers with ``helper.start_process(process)``: a ``fork`` start made
while the process runs other threads goes to the helper (the payload carries no
preparation data, the child just unpickles its ``Process``), one made while it runs
one thread forks directly, as always. A worker forked by the helper sees the parent as it
was when the helper was made, which is what the pool's first workers saw too. A pool
made while other threads already run (the program's, or a library's: numpy's BLAS
starts some on import) forks its helper then, once, with Python's warning, and every
worker through it: the helper itself runs one thread, as every forked process does.

The helper's owner ends it with ``close()``, after the children it forked (it reports
their exit codes); it exits by itself when its owner dies. Processes later forked from
the owner do not keep it alive: an at-fork hook closes every helper's control socket in
them. If the helper is gone (killed from outside), ``start_process`` forks directly.
"""

from __future__ import annotations

import _thread
import errno
import os
import select
import signal
import socket
import struct

from plait._core.fdpass import MAX_FDS
from plait.process import fork, lifeline
from plait.process.bootstrap import load_and_run, prepare, read_exactly
from plait.process.child import (
    UNKNOWN_EXITCODE,
    ChildHandle,
    flush_std_streams,
    kill_and_reap,
    wait_readable,
)
from plait.process.spawn import STDIN_FROM_DEVNULL, child_command, dumps_payload, preparation_data

# Annotations only: importing typing would cost the fork server ~10 ms (see spawn).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from plait.process.process import Process

__all__ = [
    "ForkHelper",
    "ForkServerChild",
    "set_forkserver_preload",
    "stop_server",
    "serve",
    "ensure_running",
    "get_inherited_fds",
    "connect_to_new_process",
    "ForkServer",
]

_PID = struct.Struct("q")
_CODE = struct.Struct("i")
_LENGTH = struct.Struct("Q")

_lock = _thread.allocate_lock()
_control: socket.socket | None = None
_server_pid: int | None = None
_preload: list[str] = []


def set_forkserver_preload(module_names: list[str]) -> None:
    """Modules the next fork server imports once, so its children start with them loaded.

    The parent's ``__main__`` is always preloaded. A module that fails to import is
    skipped (its children import it themselves, and fail visibly if they need it).
    Raises ``TypeError`` unless ``module_names`` is a list of strings.
    """
    global _preload
    if not isinstance(module_names, list) or not all(type(m) is str for m in module_names):
        raise TypeError("module_names must be a list of strings")
    _preload = list(module_names)


class ForkServerChild(ChildHandle):
    """A child forked by the fork server (or by ``helper``, a ``ForkHelper``); exit code
    and sentinel come through a socket."""

    method = "forkserver"

    def __init__(self, process_obj: Process, helper: ForkHelper | None = None) -> None:
        if helper is None:
            payload, collector = dumps_payload(process_obj, self.method)
        else:
            payload, collector = dumps_payload(process_obj, "fork", copy_of_parent=True)
        self._holds_lifeline = lifeline.wanted(process_obj)
        mine, theirs = socket.socketpair()
        # socket.setdefaulttimeout() makes new sockets non-blocking; these are read with
        # plain blocking reads (here, in the server and in the child).
        mine.setblocking(True)
        theirs.setblocking(True)
        try:
            lifeline_fds = [lifeline.reader()] if self._holds_lifeline else []
            try:
                fds = [theirs.fileno(), *lifeline_fds, *collector.fds]
                if helper is None:
                    _request(fds, bool(lifeline_fds))
                else:
                    helper.request(fds, bool(lifeline_fds))
            finally:
                for fd in lifeline_fds:
                    os.close(fd)
                collector.close()
                theirs.close()
            try:
                mine.sendall(_LENGTH.pack(len(payload)) + payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server refused the request and closed its end: its answer says why
            reply = read_exactly(mine.fileno(), _PID.size)
            if len(reply) < _PID.size:
                raise OSError("the fork server closed the connection before reporting a pid")
            pid = _PID.unpack(reply)[0]
            if pid < 0:
                raise OSError(-pid, f"the fork server could not start a child: {os.strerror(-pid)}")
        except BaseException:
            mine.close()
            if self._holds_lifeline:
                lifeline.release()
            raise
        self.pid = pid
        self.returncode: int | None = None
        self.sentinel = mine.detach()
        self._lock = _thread.allocate_lock()

    def poll(self) -> int | None:
        """The exit code if the child has ended, else ``None``; never blocks."""
        if self.returncode is None:
            with self._lock:
                if self.returncode is None and wait_readable(self.sentinel, 0):
                    data = read_exactly(self.sentinel, _CODE.size)
                    if len(data) == _CODE.size:
                        self.returncode = _CODE.unpack(data)[0]
                    else:
                        self.returncode = UNKNOWN_EXITCODE  # the server died
                    if self._holds_lifeline:
                        self._holds_lifeline = False
                        lifeline.release()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the child ends or ``timeout`` passes; return the exit code or ``None``."""
        if self.returncode is None and not wait_readable(self.sentinel, timeout):
            return None
        return self.poll()

    def send_signal(self, signum: int) -> None:
        """Signal the child by pid unless its exit code has arrived."""
        if self.poll() is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass


class ForkHelper:
    """A fork server forked from this process now (see "Fork helpers" above).

    Make it while this process runs one thread; ``start_process(p)`` then starts ``p``
    as ``p.start()`` does, but a ``fork`` start made while other threads run is forked
    by the helper. ``close()`` ends it. Raises ``OSError`` if the fork fails.
    """

    def __init__(self) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        mine.setblocking(True)  # as for the fork server: no default timeout
        theirs.setblocking(True)
        flush_std_streams()
        # A Ctrl-C that reaches the helper before it ignores SIGINT would stop it: it
        # waits, blocked, until then (ignoring a signal discards it if pending).
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGINT,))
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            mine.close()
            theirs.close()
            raise
        if pid == 0:
            _be_helper(mine, theirs, mask)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        theirs.close()
        self.pid = pid
        self._control: socket.socket | None = mine
        self._lock = _thread.allocate_lock()
        _helpers.add(self)

    def start_process(self, process: Process) -> None:
        """``process.start()``, with the helper forking it if this process runs threads."""
        fork.through.helper = self
        try:
            process.start()
        finally:
            fork.through.helper = None

    def start(self, process_obj: Process) -> ChildHandle | None:
        """Have the helper fork ``process_obj``; ``None`` if the helper is gone."""
        if self._control is None:
            return None
        try:
            return ForkServerChild(process_obj, self)
        except (BrokenPipeError, ConnectionError):
            self.close(0)
            return None

    def request(self, fds: list[int], with_lifeline: bool) -> None:
        """Send one request (see ``_request``); ``BrokenPipeError`` if the helper is gone."""
        control = self._control
        if control is None:
            raise BrokenPipeError("the fork helper is closed")
        socket.send_fds(control, [b"L" if with_lifeline else b"F"], fds)

    def close(self, timeout: float = 5.0) -> bool:
        """End the helper: it exits, is reaped, and forks nothing more.

        Blocks up to ``timeout`` seconds for it to exit, then kills it. Children it forked
        keep running; if any still runs, its exit code is reported as 255. Returns
        whether it exited by itself.
        """
        with self._lock:
            control, self._control = self._control, None
        if control is None:
            return True
        _helpers.discard(self)
        control.close()
        if _reap_server(self.pid, timeout):
            return True
        kill_and_reap(self.pid)
        return False

    def _forget(self) -> None:
        """In a process forked from the owner: the helper is not ours."""
        if self._control is not None:
            self._control.close()
            self._control = None


# The helpers this process owns (their control sockets are closed in forked children).
_helpers: set[ForkHelper] = set()


def _be_helper(mine: socket.socket, theirs: socket.socket, mask: set) -> None:
    """In the helper, just forked with SIGINT blocked: serve ``theirs`` until the owner
    closes it; exit. ``mask`` is the owner's signal mask, restored once SIGINT is ignored."""
    code = 0
    try:
        int_handler = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # see serve
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        mine.close()
        _serve(theirs, int_handler)
    except BaseException:
        import traceback  # noqa: PLC0415 - only a failing helper pays for it

        traceback.print_exc()
        code = 1
    finally:
        flush_std_streams()
        os._exit(code)


def _request(fds: list[int], with_lifeline: bool) -> None:
    """Ask the server to fork a child for the socket ``fds[0]``; start a server if needed.

    ``fds[1]`` is the child's lifeline if ``with_lifeline``; the rest travel with its
    arguments (see ``fdpass``).
    """
    for attempt in (1, 2):
        control = _ensure_server()
        try:
            socket.send_fds(control, [b"L" if with_lifeline else b"F"], fds)
            return
        except (BrokenPipeError, ConnectionResetError):
            if attempt == 2:
                raise
            _discard_server(control)


def _ensure_server() -> socket.socket:
    global _control, _server_pid
    with _lock:
        if _control is not None:
            return _control
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        mine.setblocking(True)  # as above: a default timeout must not reach the server
        theirs.setblocking(True)
        fd = theirs.fileno()
        try:
            argv = child_command(f"from plait.process.forkserver import serve;serve({fd})")
            # SIGINT blocked until serve ignores it: a Ctrl-C while Python starts would
            # stop the server (and the next start would have to spawn another).
            pid = os.posix_spawn(
                argv[0],
                argv,
                os.environ,
                file_actions=[STDIN_FROM_DEVNULL, (os.POSIX_SPAWN_DUP2, fd, fd)],
                setsigmask=(signal.SIGINT,),
            )
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        from plait._core import serialization  # noqa: PLC0415 - parents only

        data = preparation_data("forkserver")
        data["preload"] = _preload
        try:
            mine.sendall(serialization.dumps(data))
        except BaseException:
            # e.g. EMSGSIZE: more preparation data than one seqpacket record holds. The
            # server has done nothing yet: end it now rather than wait for it to read EOF.
            mine.close()
            kill_and_reap(pid)
            raise
        _control, _server_pid = mine, pid
        return mine


def ensure_running() -> None:
    """Start this process's fork server unless it runs (blocks until it is spawned)."""
    _ensure_server()


def get_inherited_fds() -> None:
    """``None``: a child of plait's fork server gets its fds inside its arguments."""
    return None


def connect_to_new_process(fds: list[int]) -> None:
    """Not offered: plait's fork server speaks its own protocol."""
    raise NotImplementedError(
        "plait's fork server does not take multiprocessing's requests; start children with "
        "plait.multiprocessing.get_context('forkserver').Process"
    )


class ForkServer:
    """This process's fork server as ``multiprocessing.forkserver._forkserver`` shows it:
    a view of the module's state (one server per process)."""

    ensure_running = staticmethod(ensure_running)
    get_inherited_fds = staticmethod(get_inherited_fds)
    connect_to_new_process = staticmethod(connect_to_new_process)

    @staticmethod
    def set_forkserver_preload(modules_names: list[str]) -> None:
        set_forkserver_preload(modules_names)

    @property
    def _forkserver_pid(self) -> int | None:
        return _server_pid

    @staticmethod
    def _stop() -> None:
        stop_server()


def _discard_server(control: socket.socket) -> None:
    global _control, _server_pid
    with _lock:
        if _control is control:
            _control.close()
            _reap_server(_server_pid, 0)
            _control = _server_pid = None


def _reap_server(pid: int | None, timeout: float) -> bool:
    if pid is None:
        return True
    fd = os.pidfd_open(pid)
    try:
        wait_readable(fd, timeout)
    finally:
        os.close(fd)
    return os.waitpid(pid, os.WNOHANG)[0] != 0


def stop_server(timeout: float = 5.0) -> bool:
    """Stop this process's fork server, if any; return whether it has exited and been reaped.

    Children it forked keep running (their exit codes are then reported as 255). Blocks
    up to ``timeout`` seconds for the server to exit.
    """
    global _control, _server_pid
    with _lock:
        control, pid = _control, _server_pid
        _control = _server_pid = None
    if control is None:
        return True
    control.close()
    return _reap_server(pid, timeout)


def _forget_in_child() -> None:
    """After ``fork``: the parent's server and helpers are not ours (and its lock may be
    held)."""
    global _control, _server_pid, _lock
    _lock = _thread.allocate_lock()
    if _control is not None:
        _control.close()
    _control = _server_pid = None
    for helper in _helpers:
        helper._forget()
    _helpers.clear()


os.register_at_fork(after_in_child=_forget_in_child)


# -- the server --------------------------------------------------------------------


def serve(control_fd: int) -> None:
    """Main loop of the fork server (see the module docstring); exits on control EOF."""
    import _pickle  # noqa: PLC0415 - see bootstrap.load_and_run

    # Ctrl-C in a terminal signals the whole process group: the parent decides what
    # happens to its children, the server must not die of it. It started with SIGINT
    # blocked; ignoring it discards one that came while Python started.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGINT,))
    # posix_spawn's dup2 cleared close-on-exec: a program the parent's ``__main__`` runs
    # here while it is preloaded must not inherit the control socket.
    os.set_inheritable(control_fd, False)
    control = socket.socket(fileno=control_fd)
    first = control.recv(1 << 20)  # one seqpacket record: the preparation data
    if not first:
        return
    data = _pickle.loads(first)
    try:
        prepare(data)
    except Exception:
        pass  # a child that needs the failed part fails visibly when it runs it
    for name in data["preload"]:
        try:
            __import__(name)
        except Exception:
            pass  # as above
    _serve(control, signal.default_int_handler)


def _serve(control: socket.socket, int_handler: Any) -> None:
    """Fork a child per request on ``control`` until it reports EOF; the children get
    ``int_handler`` back for SIGINT."""
    control_fd = control.fileno()
    poller = select.poll()
    poller.register(control_fd, select.POLLIN)
    children: dict[int, tuple[int, int]] = {}  # pidfd -> (pid, connection fd)
    while True:
        for fd, _ in poller.poll():
            if fd != control_fd:
                pid, conn = children.pop(fd)
                poller.unregister(fd)
                _, status = os.waitpid(pid, 0)
                _answer(conn, _CODE.pack(os.waitstatus_to_exitcode(status)))
                os.close(conn)
                os.close(fd)
                continue
            try:
                kind, fds, flags, _ = socket.recv_fds(control, 16, 2 + MAX_FDS)
            except ConnectionResetError:
                return  # the parent is gone
            if not kind:
                return  # EOF: the parent is gone
            if not fds:
                continue  # out of fds: the kernel closed the request's, its parent reads EOF
            try:
                pid, pidfd = _fork_child(
                    kind, fds, flags & socket.MSG_CTRUNC, control, children, int_handler
                )
            except OSError as e:
                # This request fails, with its errno; the server goes on serving.
                _answer(fds[0], _PID.pack(-(e.errno or errno.EIO)))
                os.close(fds[0])
                continue
            _answer(fds[0], _PID.pack(pid))
            children[pidfd] = (pid, fds[0])
            poller.register(pidfd, select.POLLIN)


def _fork_child(
    kind: bytes,
    fds: list[int],
    truncated: int,
    control: socket.socket,
    children: dict,
    int_handler: Any,
) -> tuple[int, int]:
    """Fork the child of one request; return its pid and pidfd.

    Closes every fd of the request but the connection ``fds[0]``. Raises ``OSError`` if
    the request lost fds (``truncated``: the server is out of fds), or ``fork`` or
    ``pidfd_open`` fails; a child forked by then has been killed and reaped.
    """
    conn, rest = fds[0], fds[1:]
    try:
        if truncated:
            raise OSError(errno.EMFILE, "the fork server is out of fds")
        lifeline_fd, args = (rest[0], rest[1:]) if kind == b"L" else (-1, rest)
        flush_std_streams()
        pid = os.fork()
        if pid == 0:
            _run_child(conn, lifeline_fd, args, control, children, int_handler)
    finally:
        for fd in rest:
            os.close(fd)
    try:
        return pid, os.pidfd_open(pid)
    except OSError:
        kill_and_reap(pid)
        raise


def _answer(conn: int, data: bytes) -> None:
    """Write a reply to a requester that may have gone away (then nobody needs it)."""
    try:
        os.write(conn, data)
    except OSError:
        pass


def _run_child(
    conn: int,
    lifeline_fd: int,
    fds: list[int],
    control: socket.socket,
    children: dict,
    int_handler: Any,
) -> None:
    """In a child forked by the server: drop the server's fds, run the process, exit."""
    code = 1
    try:
        signal.signal(signal.SIGINT, int_handler)
        control.close()
        for pidfd, (_, other) in children.items():
            os.close(pidfd)
            os.close(other)
        children.clear()
        if lifeline_fd >= 0:
            lifeline.arm(lifeline_fd)
        header = read_exactly(conn, _LENGTH.size)
        payload = read_exactly(conn, _LENGTH.unpack(header)[0]) if header else b""
        os.close(conn)
        if payload:
            code = load_and_run(payload, fds)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback  # noqa: PLC0415 - only a failing child pays for it

        traceback.print_exc()
    finally:
        flush_std_streams()
        os._exit(code)


_forkserver = ForkServer()
