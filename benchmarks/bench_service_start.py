"""How fast gilwise's process workers start and how much a call costs, beside the stdlib.

Each "first result" figure is measured in a fresh Python process (so nothing is warm): the
time from creating the pool to the first result of a trivial task, the pool created inside
the timed region as a script does. Rows are interleaved over ``--rounds`` rounds; medians.

    python benchmarks/bench_service_start.py [--rounds 3]

Prints a markdown table. Figures depend on the machine and its load: compare the ratios
of one run, not figures across runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
SLOW_MODULE = textwrap.dedent(
    """
    import time
    time.sleep(0.25)

    def where(_):
        import os
        return os.getpid()
    """
)


def spin_1ms(_: object = None) -> int:
    """About 1 ms of pure-Python work (calibrated at import by the parent)."""
    total = 0
    for i in range(SPIN_LOOPS):
        total += i
    return total


SPIN_LOOPS = 20_000


# --- child: one cold measurement --------------------------------------------------------
def _child(kind: str, module_dir: str) -> None:
    sys.path.insert(0, module_dir)
    if kind.endswith("-slow"):
        import slow_module  # imported before the pool, as a program does

        task = slow_module.where
    else:
        task = os.getpid
    arg = (0,) if kind.endswith("-slow") else ()
    if kind.startswith("ppe"):
        from concurrent.futures import ProcessPoolExecutor  # before the clock starts

        begun = time.perf_counter()
        pool = ProcessPoolExecutor()
        pool.submit(task, *arg).result()
        first = time.perf_counter() - begun
        pool.shutdown()
        print(first)
        return
    from gilwise import Executor  # imported before the clock starts, like the stdlib pool

    begun = time.perf_counter()
    with Executor(backend="process") as executor:
        executor.submit(task, *arg).result()
        first = time.perf_counter() - begun
    begun = time.perf_counter()
    with Executor(backend="process") as executor:  # the second one: warm workers
        executor.submit(task, *arg).result()
        second = time.perf_counter() - begun
    print(first, second)


def _child_env(module_dir: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, module_dir]))
    # Byte-code caching on, as for a user: a first-result figure is not a compile-time one
    # (the warm-up run below writes the caches).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _run_child(kind: str, module_dir: str) -> list[float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, module_dir],
        capture_output=True,
        text=True,
        check=True,
        env=_child_env(module_dir),
    )
    return [float(x) for x in done.stdout.split()]


# --- in this process: per-call costs ---------------------------------------------------
def _calibrate() -> None:
    global SPIN_LOOPS
    begun = time.perf_counter()
    for _ in range(20):
        spin_1ms()
    per_call = (time.perf_counter() - begun) / 20
    SPIN_LOOPS = max(1000, int(SPIN_LOOPS * 0.001 / per_call))


def _loop_rate(calls: int) -> float:
    begun = time.perf_counter()
    for _ in range(calls):
        spin_1ms()
    return calls / (time.perf_counter() - begun)


def _batch_rate(backend: object, calls: int, batch: int) -> float:
    begun = time.perf_counter()
    futures = []
    for start in range(0, calls, batch):
        futures += backend.submit_batch(  # type: ignore[attr-defined]
            spin_1ms, [((i,), {}) for i in range(start, min(calls, start + batch))]
        )
    for future in futures:
        future.result()
    return calls / (time.perf_counter() - begun)


def _round_trip_s(backend: object, count: int) -> float:
    times = []
    for _ in range(count):
        begun = time.perf_counter()
        backend.submit(os.getpid, (), {}).result()  # type: ignore[attr-defined]
        times.append(time.perf_counter() - begun)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        _child(*options.child)
        return
    sys.path.insert(0, SRC)
    from gilwise.backends._process import ProcessBackend

    with tempfile.TemporaryDirectory() as module_dir:
        Path(module_dir, "slow_module.py").write_text(SLOW_MODULE)
        cold: dict[str, list[list[float]]] = {
            k: [] for k in ("ppe", "gilwise", "ppe-slow", "gilwise-slow")
        }
        for kind in cold:  # warm-up: byte-code caches written, not counted
            _run_child(kind, module_dir)
        for _ in range(options.rounds):
            for kind in cold:
                cold[kind].append(_run_child(kind, module_dir))
    _calibrate()
    workers = 2
    backend = ProcessBackend(workers, idle_timeout_s=0)
    backend.submit_batch(spin_1ms, [((0,), {})] * workers)[0].result()  # workers warm
    loops, batched, trips = [], [], []
    for _ in range(options.rounds):
        loops.append(_loop_rate(200))
        batched.append(_batch_rate(backend, 400, 20))
        trips.append(_round_trip_s(backend, 200))
    backend.shutdown()
    single = ProcessBackend(
        1, idle_timeout_s=0
    )  # one worker: the per-call cost, whatever the cores
    single.submit_batch(spin_1ms, [((0,), {})])[0].result()
    alone = [_batch_rate(single, 200, 20) for _ in range(options.rounds)]
    single.shutdown()

    def med(kind: str, index: int = 0) -> float:
        return statistics.median(row[index] for row in cold[kind])

    ppe, ours = med("ppe"), med("gilwise")
    ppe_slow, ours_slow = med("ppe-slow"), med("gilwise-slow")
    loop, batch = statistics.median(loops), statistics.median(batched)
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, {options.rounds} rounds, medians"
    )
    print()
    print("| measure | gilwise | ProcessPoolExecutor() | ratio | target |")
    print("|---|---|---|---|---|")
    print(
        f"| first result, new process Executor | {ours * 1e3:.1f} ms | {ppe * 1e3:.1f} ms "
        f"| {ours / ppe:.2f}x | <= 2x + 10 ms ({(2 * ppe + 0.01) * 1e3:.1f} ms) |"
    )
    print(
        f"| same, 0.25 s-import module imported first | {ours_slow * 1e3:.1f} ms "
        f"| {ppe_slow * 1e3:.1f} ms | {ours_slow / ppe_slow:.2f}x | <= 1.2x |"
    )
    print(
        f"| first result, second Executor (warm) | {med('gilwise', 1) * 1e3:.1f} ms | "
        f"{ppe * 1e3:.1f} ms (a new pool) | {med('gilwise', 1) / ppe:.2f}x | |"
    )
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| plain loop, 1 ms calls | {loop:.0f} calls/s |")
    print(
        f"| process backend, {workers} workers, batches of 20 | {batch:.0f} calls/s "
        f"({batch / workers:.0f} per worker, {batch / workers / loop:.2f}x the loop's rate) |"
    )
    one = statistics.median(alone)
    print(
        f"| process backend, 1 worker, batches of 20 | {one:.0f} calls/s "
        f"({one / loop:.2f}x the loop's rate) |"
    )
    print(f"| submit() round trip, warm worker | {statistics.median(trips) * 1e6:.0f} us |")


if __name__ == "__main__":
    main()
