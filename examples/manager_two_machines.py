"""A dict shared by processes on two machines, through a manager served on a TCP address.

    python examples/manager_two_machines.py        # both sides on this machine, in one go

    export MANAGER_AUTHKEY=some-long-secret        # the same on both machines
    python examples/manager_two_machines.py --serve 0.0.0.0:50000     # on machine A
    python examples/manager_two_machines.py --connect A:50000         # on machine B

One side serves: ``manager.start()`` runs a manager server process listening on
HOST:PORT, which holds the shared objects, a dict ``results`` and a queue ``reports``.
Each side then starts ``--workers`` processes; each worker connects to the server on
its own, computes its share of a sum (the squares of the numbers below ``--limit``,
dealt out round-robin over the workers of both sides), stores it in the dict under its
host and pid, and puts a line on the queue. The serving side waits for a report from
every worker of both sides, checks the sum, and shuts the server down.

The server and every client authenticate each other with the key (an HMAC challenge
both ways) before either unpickles a byte, and a TCP address without a key is
refused. Alone, the program makes a random key and hands it to the connecting side,
which it runs as a second program on 127.0.0.1, through the environment. Both sides
must agree on ``--workers`` and ``--limit``.
"""

from __future__ import annotations

import argparse
import os
import queue
import socket
import subprocess
import sys
from collections.abc import Callable, MutableMapping

import plait.multiprocessing as mp
import plait.queue
from plait.multiprocessing.managers import BaseManager, DictProxy

KEY_VARIABLE = "MANAGER_AUTHKEY"
TIMEOUT = 60.0  # seconds a side waits for the other when both run here

_results: dict[str, tuple[int, int]] = {}  # the shared objects: they live in the server
_reports: plait.queue.Queue[str] = plait.queue.Queue()


def results() -> dict[str, tuple[int, int]]:
    return _results


def reports() -> plait.queue.Queue[str]:
    return _reports


class ResultsManager(BaseManager):
    # Set by register() below; declared for type checkers.
    results: Callable[[], MutableMapping[str, tuple[int, int]]]
    reports: Callable[[], plait.queue.Queue[str]]


ResultsManager.register("results", results, proxytype=DictProxy)
ResultsManager.register("reports", reports)


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host, int(port)


def work(address: tuple[str, int], authkey: bytes, index: int, total: int, limit: int) -> None:
    """One worker: connect, add the squares of ``index, index + total, ...``, report."""
    manager = ResultsManager(address=address, authkey=authkey)
    manager.connect()
    share = sum(n * n for n in range(index, limit, total))
    me = f"{socket.gethostname()}:{os.getpid()}"
    manager.results()[me] = (index, share)
    manager.reports().put(f"worker {index} ({me}) added {share}", timeout=TIMEOUT)


def run_workers(
    address: tuple[str, int], authkey: bytes, side: int, args: argparse.Namespace
) -> None:
    """Start this side's workers (side 0 serves, side 1 connects) and wait for them."""
    total = 2 * args.workers
    workers = [
        mp.Process(target=work, args=(address, authkey, side * args.workers + k, total, args.limit))
        for k in range(args.workers)
    ]
    for p in workers:
        p.start()
    for p in workers:
        p.join(TIMEOUT)
        if p.exitcode is None:
            p.kill()
            p.join(TIMEOUT)
        if p.exitcode != 0:
            raise RuntimeError(f"worker {p.pid} ended with exit code {p.exitcode}")


def end(program: subprocess.Popen[str]) -> int:
    """Wait for ``program`` to end (kill it past ``TIMEOUT``), print its output; its exit code.

    Its output comes through a pipe and is printed whole, after this side's lines: two
    programs writing to one terminal could cut each other's lines in half.
    """
    try:
        output, _ = program.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        program.kill()
        output, _ = program.communicate(timeout=TIMEOUT)
    print(output, end="")
    return program.wait(TIMEOUT)


def serve(address: tuple[str, int], authkey: bytes, args: argparse.Namespace, wait: float) -> int:
    """The serving side: the server, this side's workers, then every report and the check."""
    with ResultsManager(address=address, authkey=authkey) as manager:
        host, port = manager.address
        print(f"manager serving on {host}:{port}")
        other = None
        if args.serve is None:  # alone: the other side is a second program on this machine
            other = subprocess.Popen(
                [sys.executable, __file__, "--connect", f"127.0.0.1:{port}"]
                + ["--workers", str(args.workers), "--limit", str(args.limit)],
                env={**os.environ, KEY_VARIABLE: authkey.decode()},
                stdout=subprocess.PIPE,
                text=True,
            )
        else:
            print(f"waiting for {args.workers} workers run with --connect HOST:{port} elsewhere")
        try:
            run_workers(manager.address, authkey, 0, args)
            inbox = manager.reports()
            for _ in range(2 * args.workers):
                print(inbox.get(timeout=wait))
        except queue.Empty:
            print(f"not every worker reported within {wait} s", file=sys.stderr)
            return 1
        finally:
            other_status = 0 if other is None else end(other)
        shared = dict(manager.results())
    if other_status != 0:
        print(f"the connecting side ended with exit code {other_status}", file=sys.stderr)
        return 1
    hosts = sorted({key.rpartition(":")[0] for key in shared})
    print(f"the shared dict holds {len(shared)} entries, from the hosts {', '.join(hosts)}")
    total = sum(share for _, share in shared.values())
    expected = (args.limit - 1) * args.limit * (2 * args.limit - 1) // 6
    print(f"sum of squares below {args.limit}: {total} (the formula says {expected})")
    indices = sorted(index for index, _ in shared.values())
    if indices != list(range(2 * args.workers)) or total != expected:
        print("MISMATCH: a share is missing or counted twice", file=sys.stderr)
        return 1
    print("every worker of both sides wrote its share; the server is shut down")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    side = parser.add_mutually_exclusive_group()
    side.add_argument("--serve", type=parse_address, metavar="HOST:PORT")
    side.add_argument("--connect", type=parse_address, metavar="HOST:PORT")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per side")
    parser.add_argument("--limit", type=int, default=1_000_000)
    parser.add_argument("--wait", type=float, default=600, help="--serve: seconds to wait")
    args = parser.parse_args(argv)

    if args.serve is None and args.connect is None:
        return serve(("127.0.0.1", 0), os.urandom(16).hex().encode(), args, TIMEOUT)
    key = os.environ.get(KEY_VARIABLE)
    if not key:
        parser.error(f"set the shared key in the environment variable {KEY_VARIABLE}")
    authkey = key.encode()
    if args.serve is not None:
        return serve(args.serve, authkey, args, args.wait)
    run_workers(args.connect, authkey, 1, args)
    print(f"{args.workers} workers of this side reported to {args.connect[0]}:{args.connect[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
