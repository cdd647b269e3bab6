"""backend="auto" against every fixed gilwise backend and against peers, side by side.

Workloads (all in _executor_workloads.py): pure-Python CPU (``count``), GIL-releasing
native code (``digest``: sha256), sleep I/O (``nap``), local HTTP I/O (``fetch`` against a
ThreadingHTTPServer on 127.0.0.1 started here, answering after a short delay) and tiny calls.
Every runner creates its own pool inside the timed region (so auto also pays for measuring)
and maps the workload over its inputs; the cell is the speedup over a plain loop measured in
the same run. Contenders alternate round after round so all see the same machine load; each
cell is the median of ``--rounds``.

    python benchmarks/bench_executor.py [--rounds 3] [--quick]

Then the streaming check: gilwise.map over ``--tiny-million`` (default 1e6) tiny calls
against a plain loop. Peers (joblib, mpire) come from the ``[bench]`` extra and are skipped
if missing.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing
import os
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _executor_workloads as wl

import gilwise
from gilwise._runtime import current

HTTP_DELAY_S = 0.02
# A contender slower than this on its first round is not run again on that workload.
SLOW_CELL_S = 15.0


class _SlowHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(HTTP_DELAY_S)  # a remote service's latency
        body = b"x" * 2048
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog (5) drops connections beyond it; clients then wait a second for
    # a SYN retry, which would measure the server, not the clients' concurrency.
    request_queue_size = 256


def workloads(quick: bool, url: str) -> dict[str, tuple[Callable[[Any], Any], list]]:
    scale = 2 if quick else 1
    return {
        "CPU (pure Python)": (wl.count, [1_500_000 // scale] * 32),
        "native (sha256)": (wl.digest, [4 // scale or 1] * 32),
        "sleep I/O": (wl.nap, [0.02] * (64 // scale)),
        "HTTP I/O": (wl.fetch, [url] * (64 // scale)),
        "tiny calls": (wl.tiny, list(range(300_000 // scale))),
    }


def _sequential(fn: Callable, items: list) -> None:
    for item in items:
        fn(item)


# What auto chose in each round, per workload function: printed under the table.
AUTO_CHOICES: dict[str, list[str]] = {}


def _gilwise(backend: str) -> Callable[[Callable, list], None]:
    def run(fn: Callable, items: list) -> None:
        with gilwise.Executor(backend) as executor:
            for _ in executor.map(fn, items):
                pass
            for decision in executor.decisions.values():
                AUTO_CHOICES.setdefault(fn.__name__, []).append(
                    f"{decision.backend}x{decision.workers}"
                )

    return run


def _cf_threads(fn: Callable, items: list) -> None:
    with cf.ThreadPoolExecutor() as pool:
        list(pool.map(fn, items))


def _cf_processes(fn: Callable, items: list) -> None:
    with cf.ProcessPoolExecutor() as pool:
        list(pool.map(fn, items))


def _mp_pool(fn: Callable, items: list) -> None:
    with multiprocessing.Pool() as pool:
        pool.map(fn, items)


def _joblib(fn: Callable, items: list) -> None:
    from joblib import Parallel, delayed

    Parallel(n_jobs=-1)(delayed(fn)(item) for item in items)


def _mpire(fn: Callable, items: list) -> None:
    from mpire import WorkerPool

    with WorkerPool() as pool:
        pool.map(fn, items, progress_bar=False)


def runners() -> dict[str, Callable[[Callable, list], None]]:
    found: dict[str, Callable[[Callable, list], None]] = {
        "gilwise auto": _gilwise("auto"),
        "gilwise inline": _gilwise("inline"),
        "gilwise thread": _gilwise("thread"),
        "gilwise process": _gilwise("process"),
        "gilwise asyncio": _gilwise("asyncio"),
        # (the interpreter backend joins below where this Python has own-GIL interpreters)
        "cf.ThreadPoolExecutor": _cf_threads,
        "cf.ProcessPoolExecutor": _cf_processes,
        "multiprocessing.Pool": _mp_pool,
    }
    if current().own_gil_subinterpreters:
        found["gilwise interpreter"] = _gilwise("interpreter")
    try:
        import joblib  # noqa: F401

        found["joblib (defaults)"] = _joblib
    except ImportError:
        pass
    try:
        import mpire  # noqa: F401

        found["mpire"] = _mpire
    except ImportError:
        pass
    return found


def _time(run: Callable[[Callable, list], None], fn: Callable, items: list) -> float:
    start = time.perf_counter()
    run(fn, items)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="half-size workloads")
    parser.add_argument("--tiny-million", type=int, default=1_000_000)
    args = parser.parse_args(argv)

    server = _Server(("127.0.0.1", 0), _SlowHandler)
    serving = threading.Thread(target=server.serve_forever, name="bench-http", daemon=True)
    serving.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        table = _measure_all(workloads(args.quick, url), runners(), args.rounds)
    finally:
        server.shutdown()
        server.server_close()
    _print_table(table)
    print(
        "\nauto chose, round by round: "
        + "; ".join(f"{name}: {', '.join(choices)}" for name, choices in AUTO_CHOICES.items())
    )
    load_1min = os.getloadavg()[0]
    print(f"(load average at the end: {load_1min:.1f} on {current().cores} cores)")
    _print_tiny_stream(args.tiny_million)
    return 0


def _measure_all(loads: dict, contenders: dict, rounds: int) -> dict[str, dict[str, float]]:
    times: dict[str, dict[str, list[float]]] = {
        load: {name: [] for name in ["sequential", *contenders]} for load in loads
    }
    for load, (fn, items) in loads.items():
        print(f"measuring {load} ...", file=sys.stderr, flush=True)
        for _ in range(rounds):
            times[load]["sequential"].append(_time(_sequential, fn, items))
            for name, run in contenders.items():
                if times[load][name] and times[load][name][0] > SLOW_CELL_S:
                    continue  # hopelessly slow here (e.g. one IPC round trip per tiny call)
                times[load][name].append(_time(run, fn, items))
    return {
        load: {
            name: statistics.median(by_load["sequential"]) / statistics.median(samples)
            for name, samples in by_load.items()
        }
        for load, by_load in times.items()
    }


def _print_table(speedups: dict[str, dict[str, float]]) -> None:
    facts = current()
    loads = list(speedups)
    names = list(next(iter(speedups.values())))
    print(
        f"\nSpeedup over a plain loop (higher is better), Python {facts.version_text}, "
        f"{facts.cores} cores, GIL {'on' if facts.gil_enabled else 'off'}:\n"
    )
    print("| runner | " + " | ".join(loads) + " |")
    print("|---|" + "---:|" * len(loads))
    for name in names:
        cells = []
        for load in loads:
            value = speedups[load][name]
            best = max(v for n, v in speedups[load].items() if n != "sequential")
            mark = "**" if value == best else ""
            cells.append(f"{mark}{value:.2f}x{mark}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    ratios = []
    for load in loads:
        fixed = [
            v for n, v in speedups[load].items() if n.startswith("gilwise ") and n != "gilwise auto"
        ]
        ratios.append(f"{speedups[load]['gilwise auto'] / max(fixed):.2f}")
    print("| auto / best fixed gilwise backend | " + " | ".join(ratios) + " |")


def _print_tiny_stream(count: int) -> None:
    items = range(count)
    start = time.perf_counter()
    loop_total = 0
    for item in items:
        loop_total += wl.tiny(item)
    loop_s = time.perf_counter() - start
    start = time.perf_counter()
    stream_total = sum(gilwise.map(wl.tiny, items))
    stream_s = time.perf_counter() - start
    assert stream_total == loop_total
    print(
        f"\ngilwise.map over {count:,} tiny calls: {stream_s / loop_s:.2f}x the time of a "
        f"plain loop (target: within 3x)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
