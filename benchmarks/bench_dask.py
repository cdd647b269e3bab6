"""What going through a dask scheduler costs, next to gilwise's process backend.

Runs the same pure-Python CPU tasks (a loop that holds the GIL) on a 2-worker dask
LocalCluster (worker processes, one thread each) and on 2 worker processes of gilwise's process
backend (or concurrent.futures.ProcessPoolExecutor if that backend is not available; the table
says which), alternating the two, round after round, so both see the same machine load.
Start-up (cluster, pool) and a warm-up round are excluded. Prints a markdown table of wall
times and the dask/process ratio; a ratio near 1.0 means the scheduler's overhead vanishes
behind tasks of this size.

    python benchmarks/bench_dask.py [--tasks 16] [--task-s 0.2] [--rounds 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Callable


def spin(iterations: int) -> int:
    """Pure-Python CPU work: holds the GIL for its whole run."""
    total = 0
    for i in range(iterations):
        total += i % 7
    return total


def echo(value: int) -> int:
    return value


def iterations_for(task_s: float) -> int:
    """Loop iterations that take about ``task_s`` in this interpreter on this machine."""
    probe = 200_000
    start = time.perf_counter()
    spin(probe)
    elapsed_s = time.perf_counter() - start
    return max(1, int(probe * task_s / elapsed_s))


class _PoolAsBackend:
    """ProcessPoolExecutor behind the backend protocol's submit/shutdown (the fallback)."""

    name = "ProcessPoolExecutor (gilwise process backend not available)"

    def __init__(self, workers: int) -> None:
        self._pool = ProcessPoolExecutor(workers)

    def submit(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Future:
        return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)


def make_process_backend(workers: int) -> tuple[Any, str]:
    """gilwise's process backend if it is there, else ProcessPoolExecutor; and which it is."""
    try:
        from gilwise.backends import create

        return create("process", workers), "gilwise process backend"
    except ImportError:
        return _PoolAsBackend(workers), _PoolAsBackend.name


def run_round(backend: Any, fn: Callable[[int], int], argument: int, tasks: int) -> float:
    """Wall seconds to submit ``tasks`` calls and collect every result."""
    start = time.perf_counter()
    futures = [backend.submit(fn, (argument,), {}) for _ in range(tasks)]
    for future in futures:
        future.result()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=16, help="CPU tasks per round")
    parser.add_argument("--task-s", type=float, default=0.2, help="seconds per CPU task")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (median)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes each")
    parser.add_argument("--tiny-tasks", type=int, default=200, help="no-op tasks per round")
    options = parser.parse_args(argv)

    from gilwise.backends._dask import DaskBackend

    iterations = iterations_for(options.task_s)
    dask = DaskBackend(options.workers, address="local")
    process, process_label = make_process_backend(options.workers)
    try:
        workloads = [
            (
                f"{options.tasks} CPU tasks of ~{options.task_s:g} s",
                spin,
                iterations,
                options.tasks,
            ),
            (f"{options.tiny_tasks} no-op tasks", echo, 1, options.tiny_tasks),
        ]
        rows = []
        for title, fn, argument, tasks in workloads:
            run_round(dask, fn, argument, min(tasks, 4 * options.workers))  # warm-up
            run_round(process, fn, argument, min(tasks, 4 * options.workers))
            dask_s, process_s = [], []
            for _ in range(options.rounds):
                dask_s.append(run_round(dask, fn, argument, tasks))
                process_s.append(run_round(process, fn, argument, tasks))
            rows.append((title, tasks, statistics.median(process_s), statistics.median(dask_s)))
    finally:
        dask.shutdown()
        process.shutdown()

    serial_s = options.tasks * options.task_s
    print(f"## dask LocalCluster vs process pool ({options.workers} worker processes each)\n")
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} cores; process side: "
        f"{process_label}; median of {options.rounds} rounds; serial estimate for the CPU "
        f"tasks: {serial_s:.2f} s.\n"
    )
    print("| workload | process wall s | dask wall s | dask / process | extra wall ms per task |")
    print("|---|---:|---:|---:|---:|")
    for title, tasks, process_wall_s, dask_wall_s in rows:
        overhead_ms = (dask_wall_s - process_wall_s) / tasks * 1000
        print(
            f"| {title} | {process_wall_s:.3f} | {dask_wall_s:.3f} | "
            f"{dask_wall_s / process_wall_s:.2f} | {overhead_ms:+.2f} |"
        )
    return 0


if __name__ == "__main__":  # the guard matters: dask and process workers are spawned
    logging.getLogger("distributed").setLevel(logging.ERROR)
    sys.exit(main())
