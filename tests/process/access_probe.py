"""Who can make a fork server fork: probes that the access tests run in many processes.

``forks_obtained`` is the insider's attempt: it sends a fork request, in plait's format,
on every ``SOCK_SEQPACKET`` Unix socket this process holds (any of them could be a fork
server's control socket) and counts the requests answered with a pid. In the process that
started a fork server the count is 1 (one more per fork helper); in any other process it
must be 0. A request that is answered forks a child that reads no payload and exits 1;
the server reaps it.

Run as a program (``python access_probe.py PID``), this module is the stranger's attempt:
a process that is no relative of the server looks up every named Unix socket the process
``PID`` has open (``/proc/PID/fd`` and ``/proc/net/unix``), connects to each and sends a
fork request in ``multiprocessing``'s format: four pipe fds, the first two being the
child's data and status pipes. It prints, as JSON, the addresses it found and how many
requests were answered with a pid. This module imports nothing but the standard library,
so that the stranger owes nothing to the server's side.
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import sys

PID = struct.Struct("q")


def forks_obtained(timeout: float = 5.0) -> int:
    """How many of this process's seqpacket Unix sockets fork a child when asked."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            fd = os.dup(int(name))
        except OSError:
            continue  # the fd of the listing itself, closed by now
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            os.close(fd)
            continue  # not a socket
        with sock:
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_SEQPACKET:
                continue
            if _answered(sock, timeout):
                count += 1
    return count


def _answered(sock: socket.socket, timeout: float) -> bool:
    mine, theirs = socket.socketpair()
    with mine, theirs:
        try:
            socket.send_fds(sock, [b"F"], [theirs.fileno()])
        except OSError:
            return False
        theirs.close()
        if not select.select([mine], [], [], timeout)[0]:
            return False
        reply = mine.recv(PID.size)
        return len(reply) == PID.size and PID.unpack(reply)[0] > 0


def exit_with_forks_obtained() -> None:
    """A child's target: exit with the number of forks it obtained (0: none)."""
    sys.exit(forks_obtained())


def report_as_forkserver_child(path: str) -> None:
    """A fork server's child: start a grandchild with this process's own fork server (the
    grandchild probes), probe here too, and write both counts to ``path`` as JSON."""
    from plait.process import forkserver, get_context  # noqa: PLC0415 - the stranger needs no plait

    grandchild = get_context("forkserver").Process(target=exit_with_forks_obtained)
    grandchild.start()
    grandchild.join(60)
    mine = forks_obtained()
    forkserver.stop_server()
    with open(path, "w") as f:
        json.dump({"grandchild": grandchild.exitcode, "mine": mine}, f)


def named_unix_sockets(pid: int) -> list[tuple[str, int]]:
    """The addresses and socket types of the named Unix sockets process ``pid`` holds."""
    inodes = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    found = []
    with open("/proc/net/unix") as table:
        next(table)
        for line in table:
            fields = line.split()
            if len(fields) >= 8 and int(fields[6]) in inodes:
                found.append((fields[7], int(fields[4], 16)))
    return found


def stranger(pid: int, timeout: float) -> dict:
    """Connect to every named Unix socket of ``pid``; ask each to fork (see the docstring)."""
    addresses = named_unix_sockets(pid)
    forked = 0
    for path, kind in addresses:
        address = "\0" + path[1:] if path.startswith("@") else path
        data_r, data_w = os.pipe()
        status_r, status_w = os.pipe()
        try:
            with socket.socket(socket.AF_UNIX, kind) as sock:
                sock.settimeout(timeout)
                sock.connect(address)
                fds = [data_r, status_w, data_r, data_r]
                socket.send_fds(sock, [bytes([len(fds)])], fds)
                os.close(status_w)
                status_w = -1
                if select.select([status_r], [], [], timeout)[0]:
                    reply = os.read(status_r, PID.size)
                    forked += len(reply) == PID.size and PID.unpack(reply)[0] > 0
        except OSError:
            pass  # refused: that is what a server owes a stranger
        finally:
            for fd in (data_r, data_w, status_r, status_w):
                if fd >= 0:
                    os.close(fd)
    return {"addresses": [path for path, _ in addresses], "forked": forked}


if __name__ == "__main__":
    print(json.dumps(stranger(int(sys.argv[1]), float(sys.argv[2]))))
