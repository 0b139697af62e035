"""A web crawler with a bounded pool of threads, run against a site it serves itself.

    python examples/crawler.py                        # 300 pages, 8 fetches at a time
    python examples/crawler.py --pages 2000 --workers 32 --latency 0.05

The machine need not reach the internet: the program starts a local HTTP server on
127.0.0.1 with a small generated site (each page links to a few others, some links are
broken, each answer takes ``--latency`` seconds), then crawls it from page 0. A
``ThreadPoolExecutor`` of ``--workers`` threads bounds how many fetches run at once; the
crawler keeps a frontier of URLs seen, submits each new one once, and takes results as
they complete (``wait(..., return_when=FIRST_COMPLETED)``), so a slow page holds up only
its own thread. The server counts the requests it serves at once: the peak never passes
the pool's bound. At the end the crawl is checked against the site's own map.
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple

import plait.futures
import plait.threading

LINK = re.compile(rb'href="([^"]+)"')


def links_of(page: int, pages: int) -> list[str]:
    """The links on page ``page`` of a site of ``pages`` pages (every tenth is broken)."""
    targets = [f"/page/{n}" for n in (2 * page + 1, 2 * page + 2, page // 3) if n < pages]
    if page % 10 == 9:
        targets.append(f"/missing/{page}")
    return targets


def site_map(pages: int) -> tuple[set[str], set[str]]:
    """What a crawl from ``/page/0`` must find: the pages reached, and the broken links."""
    found, broken, todo = {"/page/0"}, set(), ["/page/0"]
    while todo:
        page = int(todo.pop().rsplit("/", 1)[1])
        for link in links_of(page, pages):
            if link.startswith("/missing/"):
                broken.add(link)
            elif link not in found:
                found.add(link)
                todo.append(link)
    return found, broken


class Site(ThreadingHTTPServer):
    """The local web site, counting the requests it serves at once."""

    daemon_threads = True

    def __init__(self, pages: int, latency: float) -> None:
        super().__init__(("127.0.0.1", 0), PageHandler)
        self.pages = pages
        self.latency = latency
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.requests: Counter[str] = Counter()  # path -> how many times it was asked for

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class PageHandler(BaseHTTPRequestHandler):
    server: Site

    def do_GET(self) -> None:
        site = self.server
        with site.lock:
            site.active += 1
            site.peak = max(site.peak, site.active)
            site.requests[self.path] += 1
        time.sleep(site.latency)  # a real server takes its time
        kind, _, number = self.path.removeprefix("/").partition("/")
        found = kind == "page" and number.isdigit() and int(number) < site.pages
        links = links_of(int(number), site.pages) if found else []
        # Counted out before the answer leaves: the client's next request may come as
        # soon as it has this one, and must not find this one still counted.
        with site.lock:
            site.active -= 1
        if not found:
            self.send_error(404)
            return
        body = "".join(f'<a href="{link}">{link}</a>\n' for link in links)
        data = f"<html><body>\n{body}</body></html>\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request would drown the crawler's output


class Fetched(NamedTuple):
    """One page's outcome: its HTTP status, and the links it holds."""

    status: int
    links: list[str]


# No proxy: the environment may name one, and it would not reach 127.0.0.1.
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch(url: str) -> Fetched:
    """GET ``url`` (runs in a pool thread); every wait is bounded by a timeout."""
    try:
        with opener.open(url, timeout=10) as response:
            return Fetched(response.status, [m.decode() for m in LINK.findall(response.read())])
    except urllib.error.HTTPError as error:
        error.close()
        return Fetched(error.code, [])


def crawl(root: str, start: str, workers: int) -> Iterator[tuple[str, Fetched]]:
    """Yield (path, what came back) for every page reachable from ``start``."""
    seen = {start}
    with plait.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        running = {pool.submit(fetch, root + start): start}
        while running:
            done, _ = plait.futures.wait(
                running, timeout=60, return_when=plait.futures.FIRST_COMPLETED
            )
            if not done:
                raise TimeoutError(f"no page arrived in 60 s; {len(running)} fetches running")
            for future in done:
                path = running.pop(future)
                fetched = future.result()
                yield path, fetched
                for link in fetched.links:
                    if link not in seen:
                        seen.add(link)
                        running[pool.submit(fetch, root + link)] = link


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pages", type=int, default=300, help="pages of the local site")
    parser.add_argument("--workers", type=int, default=8, help="fetches at a time")
    parser.add_argument("--latency", type=float, default=0.01, help="seconds per answer")
    args = parser.parse_args(argv)

    site = Site(args.pages, args.latency)
    server = plait.threading.Thread(target=site.serve_forever, name="site")
    server.start()
    try:
        t0 = time.perf_counter()
        pages: set[str] = set()
        broken: set[str] = set()
        for path, fetched in crawl(site.url, "/page/0", args.workers):
            (pages if fetched.status == 200 else broken).add(path)
        elapsed = time.perf_counter() - t0
    finally:
        site.shutdown()
        server.join(timeout=10)
        site.server_close()

    print(f"crawled {len(pages)} pages in {elapsed:.2f} s with {args.workers} threads")
    print(f"broken links: {len(broken)} (404), e.g. {sorted(broken)[:3]}")
    print(
        f"the server served at most {site.peak} requests at once (the pool's bound: {args.workers})"
    )
    expected_pages, expected_broken = site_map(args.pages)
    twice = [path for path, n in site.requests.items() if n > 1]
    if pages != expected_pages or broken != expected_broken or twice or site.peak > args.workers:
        print("MISMATCH: the crawl differs from the site's map", file=sys.stderr)
        return 1
    print("the crawl found every page of the site's map, each fetched once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
