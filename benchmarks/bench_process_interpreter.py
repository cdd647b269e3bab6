"""Per-task overhead, start-up and CPU scaling of gilwise's process and interpreter backends.

Side by side with concurrent.futures.ProcessPoolExecutor (spawn), in one run, alternating
the contenders round after round so all see the same machine load:

1. overhead: ``--tasks`` trivial tasks (``abs``) submitted at once to 2 warm workers;
   tasks per second (median of rounds), the ratio to ProcessPoolExecutor, and the CPU the
   calling process spends per task (submitting, sending, receiving: less sensitive to
   other load on the machine than the rate);
2. start-up: a fresh pool of 1 worker, time to the first result;
3. scaling: the same pure-Python loop once on 1 worker, then twice on 2 workers; the ratio
   two/one is 1.0 for perfect parallelism and 2.0 for none (a shared GIL).

    python benchmarks/bench_process_interpreter.py [--tasks 10000] [--rounds 3] [--spin-s 0.5]

The interpreter backend is measured where this Python has it (3.12+). Every number that
compares is a ratio measured in the same run; absolute times depend on the machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

from gilwise._runtime import current
from gilwise.backends import create


def spin(iterations: int) -> int:
    """Pure-Python CPU work: holds the GIL for its whole run."""
    total = 0
    for i in range(iterations):
        total += i % 7
    return total


def _iterations_for(seconds: float) -> int:
    probe = 200_000
    start = time.perf_counter()
    spin(probe)
    return max(probe, int(probe * seconds / (time.perf_counter() - start)))


class _Stdlib:
    """ProcessPoolExecutor behind the same submit(fn, args, kwargs) call as a backend."""

    def __init__(self, workers: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(workers, mp_context=context)

    def submit(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait)


def _contenders(include_stdlib: bool = True) -> dict[str, Callable[[int], Any]]:
    makers: dict[str, Callable[[int], Any]] = {}
    if include_stdlib:
        makers["ProcessPoolExecutor (spawn)"] = _Stdlib
    makers["gilwise process"] = lambda workers: create("process", workers)
    if current().own_gil_subinterpreters:
        makers["gilwise interpreter"] = lambda workers: create("interpreter", workers)
    return makers


def _run_all(pool: Any, fn: Callable[..., Any], arguments: list) -> float:
    start = time.perf_counter()
    futures = [pool.submit(fn, args, {}) for args in arguments]
    for future in futures:
        future.result()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--spin-s", type=float, default=0.5)
    options = parser.parse_args()
    # A sub-interpreter cannot import __main__: use this file's functions by module name.
    from bench_process_interpreter import spin

    makers = _contenders()
    pools = {name: make(2) for name, make in makers.items()}
    rates: dict[str, list[float]] = {name: [] for name in pools}
    parent_cpu_us: dict[str, list[float]] = {name: [] for name in pools}
    scaling: dict[str, list[float]] = {name: [] for name in pools}
    startup: dict[str, list[float]] = {name: [] for name in pools}
    iterations = _iterations_for(options.spin_s)
    try:
        for pool in pools.values():  # warm: both workers started, modules imported
            _run_all(pool, spin, [(1000,), (1000,)])
        trivial = [(-i,) for i in range(options.tasks)]
        for _ in range(options.rounds):
            for name, pool in pools.items():
                cpu_before_s = time.process_time()
                rates[name].append(options.tasks / _run_all(pool, abs, trivial))
                spent_s = time.process_time() - cpu_before_s
                parent_cpu_us[name].append(spent_s / options.tasks * 1e6)
                one = _run_all(pool, spin, [(iterations,)])
                two = _run_all(pool, spin, [(iterations,), (iterations,)])
                scaling[name].append(two / one)
            for name, make in makers.items():
                fresh = make(1)
                startup[name].append(_run_all(fresh, abs, [(1,)]))
                fresh.shutdown(wait=True)
    finally:
        for pool in pools.values():
            pool.shutdown(wait=True)
    facts = current()
    reference = statistics.median(rates["ProcessPoolExecutor (spawn)"])
    print(f"Python {facts.version_text}, {facts.cores} cores, {options.rounds} rounds (median)\n")
    print(
        f"| backend | trivial tasks/s ({options.tasks}) | vs ProcessPoolExecutor | "
        f"caller CPU per task (us) | first result of a fresh pool (s) | "
        f"2 loops / 1 loop ({options.spin_s:g} s each) |"
    )
    print("|---|---|---|---|---|---|")
    for name in pools:
        rate = statistics.median(rates[name])
        print(
            f"| {name} | {rate:,.0f} | {rate / reference:.2f}x | "
            f"{statistics.median(parent_cpu_us[name]):.0f} | "
            f"{statistics.median(startup[name]):.3f} | {statistics.median(scaling[name]):.2f} |"
        )


if __name__ == "__main__":
    main()
