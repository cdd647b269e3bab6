"""The program under test of the Ctrl-C tests: runs one gilwise API on tasks that never end.

    python tests/interrupt/_busy_program.py SCENARIO BUSY_DIR

Every task, wherever it runs (this process, a thread, a worker process), creates a file in
BUSY_DIR named after its process and thread as it starts, then spins for ever (pure Python:
it holds the GIL whenever it runs). The test waits for those files, which say the program is
busy, then sends SIGINT and times the exit. Scenarios are in SCENARIOS; "spin-threads" is the
program that `gilwise profile` runs (two spinning threads, no gilwise API).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

BUSY_DIR = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(".")


def spin_forever(index: int, busy_dir: str = str(BUSY_DIR)) -> int:
    """Say "busy" once, then never return (a pure-Python loop)."""
    marker = Path(busy_dir) / f"busy-{os.getpid()}-{threading.get_ident()}-{index}"
    marker.touch()
    while True:
        pass


def spin_for(index: int, busy_dir: str = str(BUSY_DIR), seconds: float = 0.05) -> int:
    """Say "busy", then spin ``seconds``: CPU-bound work that ends (for auto to measure)."""
    marker = Path(busy_dir) / f"busy-{os.getpid()}-{threading.get_ident()}-{index}"
    marker.touch()
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass
    return index


def executor_with(backend: str) -> None:
    import gilwise

    with gilwise.Executor(backend=backend, max_workers=2) as executor:
        futures = [executor.submit(spin_forever, i) for i in range(2)]
        for future in futures:
            future.result()


def executor_without_with(backend: str) -> None:
    import gilwise

    executor = gilwise.Executor(backend=backend, max_workers=2)
    futures = [executor.submit(spin_forever, i) for i in range(2)]
    for future in futures:
        future.result()


def executor_auto() -> None:
    import gilwise

    with gilwise.Executor() as executor:
        for _ in executor.map(spin_for, range(100_000)):
            pass


def streaming_map() -> None:
    import gilwise

    for _ in gilwise.map(spin_for, range(100_000)):
        pass


def pipeline_process_stage() -> None:
    import gilwise

    gilwise.Pipeline(range(100)).map(spin_forever, backend="process", workers=2).run()


def spin_threads() -> None:
    # Daemon threads: without a profiler, this program ends at once on Ctrl-C.
    threads = [threading.Thread(target=spin_forever, args=(i,), daemon=True) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


SCENARIOS = {
    "executor-with-process": lambda: executor_with("process"),
    "executor-without-with-process": lambda: executor_without_with("process"),
    "executor-with-thread": lambda: executor_with("thread"),
    "executor-without-with-thread": lambda: executor_without_with("thread"),
    "executor-auto": executor_auto,
    "gilwise-map": streaming_map,
    "pipeline-process-stage": pipeline_process_stage,
    "spin-threads": spin_threads,
}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]]()
