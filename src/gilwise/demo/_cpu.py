"""The cpu experiment: a pure-Python loop, run twice, four ways.

Sequential; 2 threads (they share one GIL); 2 processes (one GIL each); 2 sub-interpreters
with their own GIL (Python 3.12+, via gilwise's interpreter backend). Worker processes are
started with "spawn" and warmed up before the clock starts; their start-up time is reported
in the row's note instead of being hidden or mixed into the speedup. Each way runs
``repeats`` times and the fastest run is kept (see _measure).
"""

from __future__ import annotations

import multiprocessing
import threading

from ..errors import GilwiseError
from ..runtime import RuntimeFacts
from . import _work
from ._measure import DEFAULT_REPEATS, fastest_of
from ._results import ExperimentResult, Row, unavailable, with_speedups
from ._timing import Stopwatch

BASE_ITERATIONS = 10_000_000
COPIES = 2
WORKLOAD = "spin loop"
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
    rows = (
        _sequential(iterations, measure_gil, repeats),
        _threads(iterations, measure_gil, repeats),
        _processes(iterations, repeats),
        _interpreters(iterations, facts, repeats),
    )
    return ExperimentResult(
        name="cpu",
        title="CPU-bound pure Python",
        work=(
            f"`for i in range({iterations:_}): pass`, {COPIES} times; "
            f"fastest of {repeats} runs per way"
        ),
        rows=with_speedups(rows),
    )


def _sequential(iterations: int, measure_gil: bool, repeats: int) -> Row:
    def work() -> None:
        for _ in range(COPIES):
            _work.spin(iterations)

    best = fastest_of(work, repeats=repeats, measure_gil=measure_gil)
    return Row(
        WORKLOAD, "sequential", 1, best.wall_s, best.cpu_s, gil_held_fraction=best.gil_held_fraction
    )


def _threads(iterations: int, measure_gil: bool, repeats: int) -> Row:
    def work() -> None:
        threads = [
            threading.Thread(target=_work.spin, args=(iterations,), name=f"gilwise-demo-spin-{i}")
            for i in range(COPIES)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    best = fastest_of(work, repeats=repeats, measure_gil=measure_gil)
    return Row(
        WORKLOAD,
        "threads",
        COPIES,
        best.wall_s,
        best.cpu_s,
        gil_held_fraction=best.gil_held_fraction,
    )


def _processes(iterations: int, repeats: int) -> Row:
    # "spawn": fork is unsafe with threads alive (the probe's sampler, a caller's pool), and
    # forkserver would leave its server process running after the demo.
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(COPIES + 1)
    with Stopwatch() as startup:
        pool = context.Pool(
            COPIES,
            initializer=_work.worker_ready,
            initargs=(ready, _WORKER_START_TIMEOUT_S),
        )
        try:
            ready.wait(_WORKER_START_TIMEOUT_S)
        except threading.BrokenBarrierError:
            pool.terminate()
            pool.join()
            why = f"worker processes did not start within {_WORKER_START_TIMEOUT_S:.0f} s"
            return unavailable(WORKLOAD, "processes", COPIES, why)
    task_cpu_s = 0.0

    def work() -> float:
        nonlocal task_cpu_s
        pending = [pool.apply_async(_work.spin, (iterations,)) for _ in range(COPIES)]
        # Each worker reports its own CPU for the loop; the parent's share is measured here.
        worker_cpu_s = float(sum(task.get(_TASK_TIMEOUT_S) for task in pending))
        task_cpu_s += worker_cpu_s
        return worker_cpu_s

    try:
        best = fastest_of(work, repeats=repeats, measure_gil=False)
    finally:
        with Stopwatch() as teardown:
            pool.close()
            pool.join()
    # Children are reaped at pool.join(), so their whole-life CPU shows up there; what is not
    # loop CPU is start-up (interpreter + imports) and shutdown.
    overhead_cpu_s = max(0.0, teardown.result.children_cpu_s - task_cpu_s)
    return Row(
        WORKLOAD,
        "processes",
        COPIES,
        best.wall_s,
        best.cpu_s,
        gil_note="n/a (own GIL)",
        note=f"start-up {startup.result.wall_s:.2f} s ({overhead_cpu_s:.2f} CPU s), untimed",
    )


def _interpreters(iterations: int, facts: RuntimeFacts, repeats: int) -> Row:
    way = "sub-interpreters"
    if not facts.own_gil_subinterpreters:
        return unavailable(
            WORKLOAD, way, COPIES, f"needs Python 3.12+, this is {facts.version_text}"
        )
    try:
        from ..backends import create

        backend = create("interpreter", COPIES)
    except ImportError as exc:
        return unavailable(WORKLOAD, way, COPIES, f"interpreter backend not available: {exc}")
    except GilwiseError as exc:
        return unavailable(WORKLOAD, way, COPIES, str(exc))

    def work() -> None:
        pending = [backend.submit(_work.spin, (iterations,), {}) for _ in range(COPIES)]
        for task in pending:
            task.result(_TASK_TIMEOUT_S)

    try:
        with Stopwatch() as startup:
            for warm in [backend.submit(_work.spin, (1_000,), {}) for _ in range(COPIES)]:
                warm.result(_WORKER_START_TIMEOUT_S)
        # The probe watches the main interpreter's GIL, not the workers' own GILs.
        best = fastest_of(work, repeats=repeats, measure_gil=False)
    finally:
        backend.shutdown(wait=True)
    return Row(
        WORKLOAD,
        way,
        COPIES,
        best.wall_s,
        best.cpu_s,
        gil_note="n/a (own GIL)",
        note=f"start-up {startup.result.wall_s:.2f} s, untimed",
    )
