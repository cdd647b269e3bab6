"""The io experiment: N downloads from a slow local HTTP server, three ways.

Sequential (one request after another); a thread pool (threads release the GIL while they
wait on the socket); asyncio (one thread, many requests in flight). The thread pool and
asyncio get the same number of requests in flight, so the comparison is of the models, not
of the concurrency limits. CPU seconds include the demo's own server threads.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from ._http_client import HttpError, get_async, get_blocking
from ._measure import Measurement, fastest_of
from ._results import ExperimentResult, Row, with_speedups
from ._server import DEFAULT_BODY_BYTES, LocalServer

DEFAULT_REQUESTS = 40
DEFAULT_LATENCY_MS = 50.0
MAX_IN_FLIGHT = 20
WORKLOAD = "downloads"
_WARM_UP_TIMEOUT_S = 60.0


def run_io(
    requests: int = DEFAULT_REQUESTS,
    latency_ms: float = DEFAULT_LATENCY_MS,
    *,
    measure_gil: bool = False,
) -> ExperimentResult:
    """Download ``requests`` bodies each way; blocking; the server stops before returning."""
    if requests < 1:
        raise ValueError(f"requests must be at least 1, got {requests!r}")
    in_flight = min(MAX_IN_FLIGHT, requests)
    paths = [f"/item/{index}" for index in range(requests)]
    with LocalServer(latency_ms=latency_ms) as server:
        host, port = server.host, server.port
        expected_bytes = requests * server.body_bytes

        def sequential() -> None:
            check("sequential", sum(len(get_blocking(host, port, path)) for path in paths))

        def download_in(pool: ThreadPoolExecutor) -> None:
            bodies = pool.map(lambda path: get_blocking(host, port, path), paths)
            check("threads", sum(len(body) for body in bodies))

        def with_asyncio() -> None:
            check("asyncio", asyncio.run(_download_all(host, port, paths, in_flight)))

        def check(way: str, received_bytes: int) -> None:
            if received_bytes != expected_bytes:
                raise HttpError(
                    f"{way}: received {received_bytes} bytes, expected {expected_bytes}"
                )

        # One timed run per way: the latency the server adds dominates, so repeats would only
        # make the demo slower.
        rows = [_row("sequential", 1, fastest_of(sequential, repeats=1, measure_gil=measure_gil))]
        with ThreadPoolExecutor(in_flight, thread_name_prefix="gilwise-demo-io") as pool:
            # Start every worker thread before the clock, as a long-lived pool would have: each
            # warm-up task waits for all the others, so each one needs a thread of its own.
            all_started = threading.Barrier(in_flight, timeout=_WARM_UP_TIMEOUT_S)
            list(pool.map(lambda _: all_started.wait(), range(in_flight)))
            best = fastest_of(lambda: download_in(pool), repeats=1, measure_gil=measure_gil)
        rows.append(_row("threads", in_flight, best))
        best = fastest_of(with_asyncio, repeats=1, measure_gil=measure_gil)
        rows.append(_row("asyncio", in_flight, best))

    return ExperimentResult(
        name="io",
        title="I/O-bound downloads",
        work=(
            f"{requests} GETs of {DEFAULT_BODY_BYTES // 1024} KiB from a local server that "
            f"waits {latency_ms:g} ms per request (CPU s includes the server's threads)"
        ),
        rows=with_speedups(tuple(rows)),
    )


async def _download_all(host: str, port: int, paths: list[str], in_flight: int) -> int:
    limit = asyncio.Semaphore(in_flight)

    async def one(path: str) -> int:
        async with limit:
            return len(await get_async(host, port, path))

    sizes = await asyncio.gather(*(one(path) for path in paths))
    return sum(sizes)


def _row(way: str, workers: int, best: Measurement) -> Row:
    return Row(
        WORKLOAD, way, workers, best.wall_s, best.cpu_s, gil_held_fraction=best.gil_held_fraction
    )
