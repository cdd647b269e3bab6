"""NumPy matrix multiply, sequential vs 2 threads, run in a helper process.

BLAS libraries start their own threads; to compare threads fairly the helper is started with
OPENBLAS_NUM_THREADS=1 (and the OpenMP/MKL equivalents) so that each matmul uses exactly one
core, set before numpy is imported. ``python -m gilwise.demo._numpy_matmul SIZE COUNT GIL REPEATS``
prints one JSON object: {"rows": [...]} or {"unavailable": "why"}.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any

SINGLE_THREAD_ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "BLIS_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
}
THREADS = 2


def measure(size: int, count: int, measure_gil: bool, repeats: int) -> dict[str, Any]:
    """Multiply two size x size matrices ``count`` times, then the same split over 2 threads."""
    try:
        import numpy
    except ImportError:
        return {"unavailable": "numpy not installed (pip install 'gilwise[numpy]')"}
    from ._measure import fastest_in_turn

    generator = numpy.random.default_rng(0)
    left = generator.random((size, size))
    right = generator.random((size, size))

    def multiply(times: int) -> None:
        for _ in range(times):
            numpy.matmul(left, right)

    def sequential() -> None:
        multiply(count)

    def threaded() -> None:
        threads = [
            threading.Thread(
                target=multiply, args=(count // THREADS,), name=f"gilwise-demo-matmul-{i}"
            )
            for i in range(THREADS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    multiply(1)  # page in BLAS and its buffers before any clock starts
    ways = {"sequential": sequential, "threads": threaded}
    best = fastest_in_turn(ways, repeats=repeats, gil_ways=ways if measure_gil else ())
    rows = [
        {
            "way": way,
            "workers": 1 if way == "sequential" else THREADS,
            "wall_s": best[way].wall_s,
            "cpu_s": best[way].cpu_s,
            "gil_held_fraction": best[way].gil_held_fraction,
        }
        for way in ways
    ]
    return {"rows": rows, "numpy_version": numpy.__version__}


def main(argv: list[str]) -> int:
    size, count, measure_gil, repeats = int(argv[0]), int(argv[1]), argv[2] == "1", int(argv[3])
    # The parent sets these in our environment; refuse to measure a multithreaded BLAS.
    missing = [name for name, value in SINGLE_THREAD_ENV.items() if os.environ.get(name) != value]
    if missing:
        print(json.dumps({"unavailable": f"BLAS thread limits not set: {', '.join(missing)}"}))
        return 0
    print(json.dumps(measure(size, count, measure_gil, repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
