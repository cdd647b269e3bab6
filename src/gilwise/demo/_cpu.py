"""The cpu experiment: a pure-Python loop, run twice, four ways.

Sequential; 2 threads (they share one GIL); 2 processes (one GIL each); 2 sub-interpreters
with their own GIL (Python 3.12+, via gilwise's interpreter backend). Worker processes and
interpreters are started and warmed up before any clock starts; their start-up time is
reported in the row's note instead of being hidden or mixed into the speedup. The ways run
in turn, ``repeats`` times each, and each way's fastest run is kept (see _measure).
"""

from __future__ import annotations

import multiprocessing
import threading
from typing import Any, Optional

from .._runtime import RuntimeFacts
from ..errors import GilwiseError
from . import _work
from ._measure import DEFAULT_REPEATS, Measurement, Work, fastest_in_turn
from ._results import ExperimentResult, Row, unavailable, with_speedups
from ._timing import Stopwatch

BASE_ITERATIONS = 10_000_000
COPIES = 2
WORKLOAD = "spin loop"
OWN_GIL = "n/a (own GIL)"
_WORKER_START_TIMEOUT_S = 120.0
_TASK_TIMEOUT_S = 600.0


def iterations_for(scale: float) -> int:
    """Loop length of one copy at this scale (at least 1,000 so the loop is still a loop)."""
    return max(1_000, int(BASE_ITERATIONS * scale))


def run_cpu(
    scale: float,
    facts: RuntimeFacts,
    *,
    measure_gil: bool = False,
    repeats: int = DEFAULT_REPEATS,
) -> ExperimentResult:
    """Run the loop COPIES times each way; blocking; leaves no thread or process behind."""
    iterations = iterations_for(scale)
    processes = _Processes(iterations)
    interpreters = _Interpreters(iterations, facts)
    try:
        processes.start()
        interpreters.start()
        ways: dict[str, Work] = {
            "sequential": lambda: _sequential(iterations),
            "threads": lambda: _threads(iterations),
        }
        for pool in (processes, interpreters):
            if pool.why_unavailable is None:
                ways[pool.way] = pool.work
        # The probe watches this interpreter's GIL: not the workers' own GILs.
        gil_ways = ("sequential", "threads") if measure_gil else ()
        best = fastest_in_turn(ways, repeats=repeats, gil_ways=gil_ways)
    finally:
        interpreters.close()
        processes.close()
    rows = (
        _row("sequential", 1, best["sequential"]),
        _row("threads", COPIES, best["threads"]),
        processes.row(best.get(processes.way)),
        interpreters.row(best.get(interpreters.way)),
    )
    return ExperimentResult(
        name="cpu",
        title="CPU-bound pure Python",
        work=(
            f"`for i in range({iterations:_}): pass`, {COPIES} times; "
            f"ways run in turn, fastest of {repeats} runs each"
        ),
        rows=with_speedups(rows),
    )


def _sequential(iterations: int) -> None:
    for _ in range(COPIES):
        _work.spin(iterations)


def _threads(iterations: int) -> None:
    threads = [
        threading.Thread(target=_work.spin, args=(iterations,), name=f"gilwise-demo-spin-{i}")
        for i in range(COPIES)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _row(way: str, workers: int, best: Measurement, **extra: Any) -> Row:
    return Row(
        WORKLOAD,
        way,
        workers,
        best.wall_s,
        best.cpu_s,
        gil_held_fraction=best.gil_held_fraction,
        **extra,
    )


class _Processes:
    """COPIES spawned worker processes, started before timing and reaped by ``close``."""

    way = "processes"

    def __init__(self, iterations: int) -> None:
        self.iterations = iterations
        self.why_unavailable: Optional[str] = None
        self.startup_s = 0.0
        self.overhead_cpu_s = 0.0
        self._task_cpu_s = 0.0
        self._pool: Any = None

    def start(self) -> None:
        # "spawn": fork is unsafe with threads alive (the probe's sampler, a caller's pool),
        # and forkserver would leave its server process running after the demo.
        context = multiprocessing.get_context("spawn")
        ready = context.Barrier(COPIES + 1)
        with Stopwatch() as startup:
            self._pool = context.Pool(
                COPIES, initializer=_work.worker_ready, initargs=(ready, _WORKER_START_TIMEOUT_S)
            )
            try:
                ready.wait(_WORKER_START_TIMEOUT_S)
            except threading.BrokenBarrierError:
                self.why_unavailable = (
                    f"worker processes did not start within {_WORKER_START_TIMEOUT_S:.0f} s"
                )
        self.startup_s = startup.result.wall_s

    def work(self) -> float:
        pending = [self._pool.apply_async(_work.spin, (self.iterations,)) for _ in range(COPIES)]
        # Each worker reports its own CPU for the loop; the parent's is measured around us.
        worker_cpu_s = float(sum(task.get(_TASK_TIMEOUT_S) for task in pending))
        self._task_cpu_s += worker_cpu_s
        return worker_cpu_s

    def close(self) -> None:
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        with Stopwatch() as teardown:
            if self.why_unavailable is None:
                pool.close()
            else:
                pool.terminate()
            pool.join()
        # Children are reaped here, so their whole-life CPU shows up now; what is not loop
        # CPU is start-up (interpreter + imports) and shutdown.
        self.overhead_cpu_s = max(0.0, teardown.result.children_cpu_s - self._task_cpu_s)

    def row(self, best: Optional[Measurement]) -> Row:
        if best is None:
            return unavailable(WORKLOAD, self.way, COPIES, self.why_unavailable or "not run")
        note = f"start-up {self.startup_s:.2f} s ({self.overhead_cpu_s:.2f} CPU s), untimed"
        return _row(self.way, COPIES, best, gil_note=OWN_GIL, note=note)


class _Interpreters:
    """COPIES sub-interpreters with their own GIL (gilwise's interpreter backend)."""

    way = "sub-interpreters"

    def __init__(self, iterations: int, facts: RuntimeFacts) -> None:
        self.iterations = iterations
        self.facts = facts
        self.why_unavailable: Optional[str] = None
        self.startup_s = 0.0
        self._backend: Any = None

    def start(self) -> None:
        if not self.facts.own_gil_subinterpreters:
            self.why_unavailable = f"needs Python 3.12+, this is {self.facts.version_text}"
            return
        try:
            from ..backends import create

            self._backend = create("interpreter", COPIES)
        except ImportError as exc:
            self.why_unavailable = f"interpreter backend not available: {exc}"
            return
        except GilwiseError as exc:
            self.why_unavailable = str(exc)
            return
        with Stopwatch() as startup:
            # One tiny task per worker at once, so that both interpreters exist before timing.
            warmups = [self._backend.submit(_work.spin, (1_000,), {}) for _ in range(COPIES)]
            for warmup in warmups:
                warmup.result(_WORKER_START_TIMEOUT_S)
        self.startup_s = startup.result.wall_s

    def work(self) -> None:
        pending = [self._backend.submit(_work.spin, (self.iterations,), {}) for _ in range(COPIES)]
        for task in pending:
            task.result(_TASK_TIMEOUT_S)

    def close(self) -> None:
        if self._backend is not None:
            backend, self._backend = self._backend, None
            backend.shutdown(wait=True)

    def row(self, best: Optional[Measurement]) -> Row:
        if best is None:
            return unavailable(WORKLOAD, self.way, COPIES, self.why_unavailable or "not run")
        note = f"start-up {self.startup_s:.2f} s, untimed"
        return _row(self.way, COPIES, best, gil_note=OWN_GIL, note=note)
