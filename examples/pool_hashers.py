"""A pool of hashers: the SHA-256 of many files in worker processes, with per-task timeouts.

    python examples/pool_hashers.py                        # 24 files of 1 MiB it writes
    python examples/pool_hashers.py --files 200 --mib 8 --progress
    python examples/pool_hashers.py --workers 4 FILE...    # your own files

The program writes files of random bytes into a temporary directory (unless it is given
paths), and beside them one named pipe that nobody writes to: opening it waits for ever,
as reading a file on a dead network mount or a stuck device would. ``Pool.imap`` hashes
every path with a per-task ``timeout``: the task on the pipe runs past it, its worker is
killed and replaced, and that one task fails with
``TimeoutError``; every other file is hashed. ``--progress`` draws a progress bar
(tqdm). At the end the parent checks every digest against one it computes itself, and
prints the pool's statistics.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import plait.pool

BLOCK = 1 << 20  # bytes read at a time: a file of any size hashes in constant memory


def sha256_of(path: str) -> str:
    """The SHA-256 of the file at ``path``, read in blocks (runs in a worker)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def make_files(directory: Path, count: int, mib: int) -> list[str]:
    """Write ``count`` files of ``mib`` MiB of random bytes; return their paths."""
    paths = []
    for k in range(count):
        path = directory / f"data-{k:04d}.bin"
        path.write_bytes(os.urandom(mib * BLOCK))
        paths.append(str(path))
    return paths


def hash_all(paths: list[str], workers: int, timeout: float, progress: bool) -> int:
    """Hash ``paths`` in a pool, check the digests, print the outcome; return the exit code."""
    hashed: dict[str, str] = {}
    failed: dict[str, BaseException] = {}
    t0 = time.perf_counter()
    with plait.pool.Pool(workers) as pool:
        results = pool.imap(sha256_of, paths, timeout=timeout, progress=progress)
        for path in paths:  # imap keeps the input order: the n-th result is the n-th path's
            try:
                hashed[path] = results.next(timeout=timeout + 60)
            except (plait.pool.TimeoutError, OSError) as exc:
                failed[path] = exc
        pool.close()
        pool.join(timeout=60)  # the workers exit when done (leaving the block kills them)
        stats = pool.stats()
    elapsed = time.perf_counter() - t0

    size = sum(os.path.getsize(p) for p in hashed)
    print(f"{len(hashed)} files ({size / BLOCK:.0f} MiB) hashed in {elapsed:.2f} s")
    for path, error in failed.items():
        print(f"failed: {os.path.basename(path)}: {type(error).__name__}: {error}")
    print(
        f"pool statistics: tasks done {stats.tasks_done}, failed {stats.tasks_failed}, "
        f"workers replaced {stats.workers_replaced}"
    )
    wrong = [p for p, digest in hashed.items() if digest != sha256_of(p)]
    if wrong:
        print(f"WRONG digests: {wrong}", file=sys.stderr)
        return 1
    print(f"all {len(hashed)} digests match hashlib in the parent")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("paths", nargs="*", help="files to hash (default: files it writes)")
    parser.add_argument("--files", type=int, default=24, help="how many files to write")
    parser.add_argument("--mib", type=int, default=1, help="the size of each file written")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per file")
    parser.add_argument("--progress", action="store_true", help="draw a progress bar")
    args = parser.parse_args(argv)

    if args.paths:
        return hash_all(args.paths, args.workers, args.timeout, args.progress)
    with tempfile.TemporaryDirectory(prefix="plait-hashers-") as tmp:
        paths = make_files(Path(tmp), args.files, args.mib)
        stuck = os.path.join(tmp, "never-written.fifo")
        os.mkfifo(stuck)
        paths.insert(len(paths) // 2, stuck)
        return hash_all(paths, args.workers, args.timeout, args.progress)


if __name__ == "__main__":
    sys.exit(main())
