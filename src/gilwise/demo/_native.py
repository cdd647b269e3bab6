"""The native experiment: C code that releases the GIL, sequential vs 2 threads.

hashlib.sha256 over large buffers (released for buffers over 2 KiB) in this process, and a
NumPy matrix multiply in a helper process whose BLAS is limited to one thread (see
_numpy_matmul), so the threads row measures our two threads, not BLAS's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

from . import _numpy_matmul, _work
from ._measure import DEFAULT_REPEATS, fastest_in_turn
from ._results import ExperimentResult, Row, unavailable, with_speedups

BUFFER_BYTES = 8 * 1024 * 1024
BASE_HASHES = 64
MATRIX_SIZE = 768
BASE_MATMULS = 16
THREADS = 2
SHA_WORKLOAD = "sha256"
NUMPY_WORKLOAD = "numpy matmul"
_HELPER_TIMEOUT_S = 600.0


def counts_for(scale: float) -> tuple[int, int]:
    """(hashes, matmuls) at this scale: even, so both threads get the same share, at least 2."""

    def even(base: int) -> int:
        return max(THREADS, round(base * scale / THREADS) * THREADS)

    return even(BASE_HASHES), even(BASE_MATMULS)


def run_native(
    scale: float, *, measure_gil: bool = False, repeats: int = DEFAULT_REPEATS
) -> ExperimentResult:
    """Hash and multiply each way; blocking; the helper process has exited on return."""
    hashes, matmuls = counts_for(scale)
    rows = _sha256_rows(hashes, measure_gil, repeats) + _numpy_rows(matmuls, measure_gil, repeats)
    return ExperimentResult(
        name="native",
        title="CPU-bound native code that releases the GIL",
        work=(
            f"sha256 of {hashes} x {BUFFER_BYTES // (1024 * 1024)} MiB; "
            f"{matmuls} float64 {MATRIX_SIZE}x{MATRIX_SIZE} matmuls with BLAS limited to 1 thread; "
            f"ways run in turn, fastest of {repeats} runs each"
        ),
        rows=with_speedups(rows),
    )


def _sha256_rows(hashes: int, measure_gil: bool, repeats: int) -> tuple[Row, ...]:
    buffer = os.urandom(BUFFER_BYTES)
    _work.sha256_many(buffer, 1)  # fault the buffer's pages in before timing

    def sequential() -> None:
        _work.sha256_many(buffer, hashes)

    def threaded() -> None:
        threads = [
            threading.Thread(
                target=_work.sha256_many,
                args=(buffer, hashes // THREADS),
                name=f"gilwise-demo-sha-{i}",
            )
            for i in range(THREADS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    ways = {"sequential": sequential, "threads": threaded}
    best = fastest_in_turn(ways, repeats=repeats, gil_ways=ways if measure_gil else ())
    return tuple(
        Row(
            SHA_WORKLOAD,
            way,
            1 if way == "sequential" else THREADS,
            best[way].wall_s,
            best[way].cpu_s,
            gil_held_fraction=best[way].gil_held_fraction,
        )
        for way in ways
    )


def _numpy_rows(matmuls: int, measure_gil: bool, repeats: int) -> tuple[Row, ...]:
    env = dict(os.environ, **_numpy_matmul.SINGLE_THREAD_ENV)
    command = [
        sys.executable,
        "-m",
        "gilwise.demo._numpy_matmul",
        str(MATRIX_SIZE),
        str(matmuls),
        "1" if measure_gil else "0",
        str(repeats),
    ]
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=_HELPER_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return _numpy_unavailable(f"the numpy helper took over {_HELPER_TIMEOUT_S:.0f} s")
    if done.returncode != 0:
        last_line = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return _numpy_unavailable(f"the numpy helper failed (exit {done.returncode}): {last_line}")
    answer = json.loads(done.stdout)
    if "unavailable" in answer:
        return _numpy_unavailable(answer["unavailable"])
    note = "in a helper process"
    return tuple(
        Row(
            NUMPY_WORKLOAD,
            row["way"],
            row["workers"],
            row["wall_s"],
            row["cpu_s"],
            gil_held_fraction=row["gil_held_fraction"],
            note=note if row["way"] == "threads" else "",
        )
        for row in answer["rows"]
    )


def _numpy_unavailable(why: str) -> tuple[Row, ...]:
    return (
        unavailable(NUMPY_WORKLOAD, "sequential", 1, why),
        unavailable(NUMPY_WORKLOAD, "threads", THREADS, why),
    )
