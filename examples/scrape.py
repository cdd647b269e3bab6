"""Scrape a local website with gilwise.Pipeline: fetch pages (I/O), count words (CPU), store.

    python examples/scrape.py [--pages 300] [--latency-ms 50] [--out word_counts.json]

A small HTTP server (a child process, on 127.0.0.1, an ephemeral port) serves generated
pages, each after ``--latency-ms`` of simulated network delay. The pipeline fetches them
(waiting: gilwise puts it on many threads), parses them with html.parser and counts the
words (pure Python: gilwise puts it on processes, one per core), and merges the counts in
one place (tiny: inline). It writes the totals to ``--out`` and prints the per-stage
statistics and the bottleneck.

The pieces (``serve``, ``fetch``, ``count_words``, ``WordTotals``) are importable, so
benchmarks/bench_pipeline.py runs the same workload other ways.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import random
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

# Distinct page bodies; page i serves body i % DISTINCT_PAGES (pages are made once, at start).
DISTINCT_PAGES = 16
VOCABULARY = [
    "".join(random.Random(seed).choice("abcdefghijklmnopqrstuvwxyz") for _ in range(2 + seed % 9))
    for seed in range(800)
]


def make_page(number: int, words: int) -> bytes:
    """A deterministic HTML page of about ``words`` words in paragraphs and links."""
    rng = random.Random(number)
    paragraphs = []
    for start in range(0, words, 80):
        chunk = " ".join(rng.choice(VOCABULARY) for _ in range(min(80, words - start)))
        paragraphs.append(
            f'<p class="text">{chunk} <a href="/page/{rng.randrange(10**6)}">more</a></p>'
        )
    body = "\n".join(paragraphs)
    return f"<html><head><title>page {number}</title></head><body>{body}</body></html>".encode()


class _SiteHandler(BaseHTTPRequestHandler):
    # Set on the subclass that serve() builds.
    pages: list[bytes] = []
    latency_s: float = 0.0

    def do_GET(self) -> None:
        time.sleep(self.latency_s)
        try:
            number = int(self.path.rsplit("/", 1)[-1])
        except ValueError:
            self.send_error(404)
            return
        body = self.pages[number % len(self.pages)]
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the example's output to the statistics


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # many fetches connect at once
    daemon_threads = False  # server_close() waits for the request threads


@dataclass(frozen=True)
class Site:
    """A running local site: its base URL and the server's process id."""

    url: str
    pid: int


@contextlib.contextmanager
def serve(latency_s: float, words_per_page: int) -> Iterator[Site]:
    """Run the site in a child process on 127.0.0.1 (ephemeral port) while the block runs.

    A separate process, like a real remote site: its CPU is not this process's GIL time.
    """
    command = [sys.executable, __file__, "serve", str(latency_s), str(words_per_page)]
    server = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdin is not None
        port = int(server.stdout.readline())
        yield Site(f"http://127.0.0.1:{port}", server.pid)
    finally:
        if server.stdin is not None:
            # Say so rather than only closing stdin: a process forked from this program
            # meanwhile (gilwise's worker zygote) holds a copy of the pipe, so the server
            # would not see EOF until that process exits.
            with contextlib.suppress(BrokenPipeError, ValueError):
                server.stdin.write("stop\n")
                server.stdin.flush()
            with contextlib.suppress(BrokenPipeError):
                server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()


def _run_server(latency_s: float, words_per_page: int) -> None:
    pages = [make_page(n, words_per_page) for n in range(DISTINCT_PAGES)]
    handler = type("SiteHandler", (_SiteHandler,), {"pages": pages, "latency_s": latency_s})
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="scrape-site")
    thread.start()
    print(server.server_address[1], flush=True)
    for line in sys.stdin:  # until the parent says stop, or closes our stdin (or dies)
        if line.strip() == "stop":
            break
    server.shutdown()
    server.server_close()
    thread.join()


def fetch(url: str) -> str:
    """Download one page (waits on the network: I/O-bound)."""
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode("utf-8")


class _TextOf(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[str] = []

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)


def count_words(html: str) -> dict[str, int]:
    """Parse the page and count its words (pure Python: holds the GIL all the time)."""
    parser = _TextOf()
    parser.feed(html)
    parser.close()
    counts: collections.Counter[str] = collections.Counter()
    for chunk in parser.chunks:
        counts.update(word.strip(".,;:!?").lower() for word in chunk.split())
    counts.pop("", None)
    return dict(counts)


class WordTotals:
    """Merges per-page counts; keeps state, so it must run in one place (inline)."""

    def __init__(self) -> None:
        self.totals: collections.Counter[str] = collections.Counter()
        self.pages = 0

    def add(self, counts: dict[str, int]) -> int:
        self.totals.update(counts)
        self.pages += 1
        return self.pages

    def write(self, path: Path) -> None:
        result = {
            "pages": self.pages,
            "words": sum(self.totals.values()),
            "distinct_words": len(self.totals),
            "top": self.totals.most_common(20),
        }
        path.write_text(json.dumps(result, indent=2))


def page_urls(base_url: str, pages: int) -> Iterator[str]:
    return (f"{base_url}/page/{number}" for number in range(pages))


def scrape(
    base_url: str, pages: int, totals: WordTotals, *, backend: str = "auto", progress: bool = False
):
    """Run the pipeline over ``pages`` pages; return its RunStats."""
    from gilwise import Pipeline

    pipe = (
        Pipeline(page_urls(base_url, pages))
        .map(fetch, backend=backend, name="fetch")
        .map(count_words, backend=backend, name="parse")
        .map(totals.add, backend="inline", name="store")
    )
    return pipe.run(progress=progress)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--words", type=int, default=3000, help="words per page")
    parser.add_argument("--out", type=Path, default=Path("word_counts.json"))
    parser.add_argument("--backend", default="auto", help="auto (default), thread, process, ...")
    parser.add_argument("--json", action="store_true", help="print only the statistics, as JSON")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    totals = WordTotals()
    with serve(args.latency_ms / 1000, args.words) as site:
        stats = scrape(
            site.url, args.pages, totals, backend=args.backend, progress=not args.no_progress
        )
    totals.write(args.out)
    if args.json:
        print(stats.to_json())
        return 0
    print(stats.describe())
    for stage in stats.stages:
        print(f"  {stage.name}: {stage.reason}")
    print(f"wrote {args.out}: {totals.pages} pages, {sum(totals.totals.values())} words")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        _run_server(float(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit(main())
