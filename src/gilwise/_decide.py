"""What a measured task is and where its calls should run: ``decide_for_task``.

Pure functions of measurements and RuntimeFacts (no clocks, threads or I/O), used by the
Executor's and the Pipeline's chooser. Apart from _verdict (which judges profiles, and
re-exports these names) so that running work does not import the profile model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Optional

from . import _runtime
from ._runtime import RuntimeFacts

if TYPE_CHECKING:
    from ._model import BackendName

# A pool of processes (or own-GIL interpreters) on coarse tasks keeps about this share of
# each core busy with useful work; measured on 2 cores by benchmarks/bench_executor.py.
PARALLEL_EFFICIENCY = 0.95
# A call shorter than this is "tiny": shipping it to another worker costs more than running it.
TINY_CALL_S = 0.001
# Work shipped to a process should last at least this long per round trip.
PROCESS_CHUNK_TARGET_S = 0.05
# I/O-bound pools never grow beyond this many threads by default.
MAX_IO_WORKERS = 32
# ... except for one function's calls measured as waiting: threads that mostly wait are
# cheap; as many as the asyncio backend keeps in flight by default (bench_executor.py's
# sleep and HTTP rows gain up to here). A caller's max_workers lowers it.
MAX_IO_TASK_WORKERS = 128

TaskKind = Literal["io-bound", "gil-bound", "native-parallel", "tiny"]


def cpu_backend(runtime: RuntimeFacts) -> BackendName:
    """Where pure-Python CPU work runs in parallel on this interpreter."""
    if runtime.threads_run_python_in_parallel:
        return "thread"
    return "process"


def parallel_speedup(parallel_units: float, runtime: RuntimeFacts) -> float:
    """Expected speedup of spreading ``parallel_units`` independent CPU streams over the cores."""
    usable = max(1.0, min(float(runtime.cores), parallel_units))
    if usable <= 1.0:
        return 1.0
    return round(usable * PARALLEL_EFFICIENCY, 2)


@dataclass(frozen=True)
class TaskMeasurement:
    """What was measured about one function's calls.

    wall_s / cpu_s: one call run alone (thread CPU time). pair_wall_s: elapsed time of two
    calls started together on two threads (None if not measured). A pair that overlaps takes
    about wall_s; a pair serialised on the GIL takes about 2 * wall_s. pair_cpu_s: the CPU
    time both calls of the pair used together (None if not measured); when known, the
    overlap is judged from it (cores kept busy during the pair), which does not depend on a
    single call's wall time. Measurers may discount the time a thread waited for a core on
    a busy machine (see _measure.py: wall_s without it, pair_cpu_s scaled up for it), so a
    loaded machine looks neither like I/O nor like GIL contention. gil_held_share: how much
    of a single call held the GIL, by a probe thread beside it (the share of its wake-ups
    that found the GIL held, _first_call.py); without a pair it stands for the overlap
    (1.0 held: two calls would take turns; 0.0: they would overlap).
    """

    wall_s: float
    cpu_s: float
    pair_wall_s: Optional[float] = None
    is_coroutine: bool = False
    calls: int = 1
    pair_cpu_s: Optional[float] = None
    gil_held_share: Optional[float] = None

    @property
    def cpu_share(self) -> float:
        return min(1.0, self.cpu_s / self.wall_s) if self.wall_s > 0 else 1.0

    @property
    def overlap(self) -> Optional[float]:
        """About 2.0 when two calls run in parallel on threads, about 1.0 when serialised."""
        if self.pair_wall_s is None or self.pair_wall_s <= 0:
            if self.gil_held_share is not None:
                return 2.0 - min(1.0, max(0.0, self.gil_held_share))
            return None
        if self.pair_cpu_s is not None:
            return min(2.0, self.pair_cpu_s / self.pair_wall_s)
        return 2.0 * self.wall_s / self.pair_wall_s


@dataclass(frozen=True)
class Decision:
    """The backend chosen for a task and why."""

    kind: TaskKind
    backend: BackendName
    workers: int
    expected_speedup: float
    reason: str
    measured: TaskMeasurement
    chunksize: int = 1


def decide_for_task(
    measured: TaskMeasurement,
    runtime: Optional[RuntimeFacts] = None,
    *,
    max_workers: Optional[int] = None,
) -> Decision:
    """Classify a task from its measurement and pick backend, worker count and chunk size."""
    facts = runtime or _runtime.current()
    cores = facts.cores
    wall, cpu = measured.wall_s, measured.cpu_s
    share = measured.cpu_share
    cap = max_workers or None

    if share < 0.5:
        waiting = max(wall - cpu, 0.0)
        ideal = cores * (1.0 + waiting / max(cpu, wall * 0.01, 1e-6))
        workers = _clamp(math.ceil(ideal), cores, cap or MAX_IO_TASK_WORKERS)
        speedup = round(min(float(workers), 1.0 / max(share, 1.0 / workers)), 2)
        backend: BackendName = "asyncio" if measured.is_coroutine else "thread"
        return Decision(
            "io-bound",
            backend,
            workers,
            speedup,
            f"I/O-bound: a call takes {_ms(wall)} of which {share:.0%} is CPU; the rest is "
            f"waiting, which {workers} {_io_workers_noun(backend)} overlap.",
            measured,
        )

    if wall < TINY_CALL_S:
        chunk = max(1, math.ceil(PROCESS_CHUNK_TARGET_S / max(wall, 1e-7)))
        return Decision(
            "tiny",
            "inline",
            1,
            1.0,
            f"Tiny: a call takes {_ms(wall)}, less than shipping it to a worker costs; "
            f"running inline (batches of {chunk} would be needed to pay for a process).",
            measured,
            chunksize=chunk,
        )

    workers = _clamp(cores, 1, cap or cores)
    overlap = measured.overlap
    if not facts.gil_enabled or (overlap is not None and overlap >= 1.5):
        if not facts.gil_enabled:
            why = "the GIL is off (free-threaded build)"
        elif measured.pair_wall_s is None and measured.gil_held_share is not None:
            why = (
                f"it released the GIL through its first call (a probe thread found it free "
                f"at {1.0 - measured.gil_held_share:.0%} of its wake-ups)"
            )
        else:
            why = f"two calls on two threads overlapped ({overlap:.2f}x one call's throughput)"
        kind: TaskKind = "native-parallel" if facts.gil_enabled else "gil-bound"
        return Decision(
            kind,
            "thread",
            workers,
            parallel_speedup(workers, facts),
            f"CPU-bound and {why}: threads, one per core.",
            measured,
        )

    if cores <= 1:
        return Decision(
            "gil-bound",
            "inline",
            1,
            1.0,
            "CPU-bound on a single core: no pool can run it faster than inline.",
            measured,
        )
    chunk = max(1, math.ceil(PROCESS_CHUNK_TARGET_S / max(wall, 1e-7)))
    if measured.pair_wall_s is None and measured.gil_held_share is not None:
        why = (
            f"it held the GIL through its first call (a probe thread found it held at "
            f"{measured.gil_held_share:.0%} of its wake-ups), so calls on threads would take "
            f"turns"
        )
    elif overlap is not None:
        why = f"two calls on two threads serialised on the GIL ({overlap:.2f}x)"
    else:
        why = "it holds the CPU for the whole call"
    return Decision(
        "gil-bound",
        cpu_backend(facts),
        workers,
        parallel_speedup(workers, facts),
        f"GIL-bound CPU: a call takes {_ms(wall)}, {share:.0%} CPU, and {why}: processes, "
        f"one per core.",
        measured,
        chunksize=chunk,
    )


def _io_workers_noun(backend: str) -> str:
    return "tasks on an event loop" if backend == "asyncio" else "threads"


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value)) if high >= low else high


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"
