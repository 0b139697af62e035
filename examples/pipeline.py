"""A pipeline of processes connected by pipes, with an end-of-stream marker.

    python examples/pipeline.py                       # 20,000 lines through three stages
    python examples/pipeline.py --lines 1000000 --batch 500

Three processes, each stage reading from the pipe before it and writing to the pipe
after it (``Pipe(duplex=False)``: a receiving end and a sending end):

    make_lines --pipe--> split_words --pipe--> count_words --pipe--> the parent

``make_lines`` writes lines of text in batches of ``--batch`` (one message per batch
costs one system call instead of one per line); ``split_words`` turns each batch into
lower-case words; ``count_words`` counts them and, at the end, sends the counts. The end
of the stream is a message of its own, ``END``: each stage passes it on after its last
item and returns, so the stages stop in order, from the first to the last, and every
item sent before ``END`` is read before it. (A pipe's EOF would also end a stream, but
only once *every* process holding the sending end has closed it, forked siblings
included; an explicit marker does not depend on who holds what.) Every ``recv`` has a
timeout, so a stage that dies is noticed instead of waited for.

The parent checks the counts against its own count of the same text.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator

import plait.multiprocessing as mp
from plait.multiprocessing.connection import Connection

END = None  # the end-of-stream marker
TIMEOUT = 30.0  # seconds a stage waits for its next message before it gives up
WORDS = "the quick brown fox jumps over a lazy dog while plait pipes carry every word".split()


def text(lines: int, seed: int) -> Iterator[str]:
    """The same ``lines`` lines of text for the same ``seed``, in any process."""
    rng = random.Random(seed)
    for _ in range(lines):
        yield " ".join(rng.choice(WORDS).capitalize() for _ in range(rng.randint(3, 12)))


def receive(inp: Connection) -> Iterator[list[str]]:
    """The items of a stream on ``inp``, up to ``END``."""
    while (item := inp.recv(timeout=TIMEOUT)) is not END:
        yield item


def make_lines(out: Connection, lines: int, seed: int, batch: int) -> None:
    chunk: list[str] = []
    for line in text(lines, seed):
        chunk.append(line)
        if len(chunk) == batch:
            out.send(chunk)
            chunk = []
    if chunk:
        out.send(chunk)
    out.send(END)
    out.close()


def split_words(inp: Connection, out: Connection) -> None:
    for chunk in receive(inp):
        out.send([word.lower() for line in chunk for word in line.split()])
    out.send(END)
    out.close()


def count_words(inp: Connection, out: Connection) -> None:
    counts: Counter[str] = Counter()
    for words in receive(inp):
        counts.update(words)
    out.send(dict(counts))
    out.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100, help="lines per message")
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args(argv)

    lines_in, lines_out = mp.Pipe(duplex=False)
    words_in, words_out = mp.Pipe(duplex=False)
    counts_in, counts_out = mp.Pipe(duplex=False)
    stages = [
        mp.Process(target=make_lines, args=(lines_out, args.lines, args.seed, args.batch)),
        mp.Process(target=split_words, args=(lines_in, words_out)),
        mp.Process(target=count_words, args=(words_in, counts_out)),
    ]
    t0 = time.perf_counter()
    try:
        for p in stages:
            p.start()
        for end in (lines_in, lines_out, words_in, words_out, counts_out):
            end.close()  # the stages hold them now; the parent only reads the last pipe
        counts: dict[str, int] = counts_in.recv(timeout=TIMEOUT)
        for p in stages:
            p.join(TIMEOUT)
    finally:
        for p in stages:
            if p.is_alive():
                p.kill()
                p.join(TIMEOUT)
        counts_in.close()
    elapsed = time.perf_counter() - t0

    failed = [(p.name, p.exitcode) for p in stages if p.exitcode != 0]
    expected = Counter(w.lower() for line in text(args.lines, args.seed) for w in line.split())
    total = sum(counts.values())
    print(f"{args.lines} lines -> {total} words through 3 stages in {elapsed:.2f} s")
    print("most common:", ", ".join(f"{w} {n}" for w, n in Counter(counts).most_common(3)))
    if failed or counts != expected:
        print(f"MISMATCH: stages {failed}, or counts differ from the parent's", file=sys.stderr)
        return 1
    print("the counts match the parent's own; every stage ended with exit code 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
