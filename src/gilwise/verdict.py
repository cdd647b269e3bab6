"""The one place that decides what a measurement means and which backend suits it.

Pure functions of measurements and RuntimeFacts: no clocks, no threads, no I/O. The profiler
asks ``verdict_for_profile``; the executor and the pipeline ask ``decide_for_task``. Both
share ``recommend`` so a CPU-bound profile and a CPU-bound task get the same advice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal, Optional

from . import runtime as _runtime
from .model import BackendName, Profile, Verdict, VerdictKind
from .runtime import RuntimeFacts

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


# --- shared advice ----------------------------------------------------------------------


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


# --- profiles ---------------------------------------------------------------------------


# A note joins the verdict when threads waited this share of their busy time for a CPU.
CPU_WAIT_NOTE_SHARE = 0.2


def verdict_for_profile(profile: Profile, runtime: Optional[RuntimeFacts] = None) -> Verdict:
    """Judge a Profile: what kind of run it was, which backend to use, the expected speedup.

    ``runtime`` defaults to this process's facts but the profile's own ``cores`` and
    ``python.gil_enabled`` win, so a profile read from JSON is judged for the machine it ran on.
    When threads spent a good part of their busy time waiting for a CPU (the kernel's
    run-queue wait), the reason says so: the machine, not the GIL, limited that run.
    """
    verdict = _judge(profile, runtime)
    cpu_wait = sum(t.cpu_wait_s or 0.0 for t in profile.threads)
    busy = sum((t.gil_held_s or 0.0) + (t.native_s or 0.0) for t in profile.threads)
    if cpu_wait >= CPU_WAIT_NOTE_SHARE * max(busy, 1e-9) and cpu_wait >= 0.05 * profile.wall_s:
        cores = profile.cores or (runtime or _runtime.current()).cores
        verdict = replace(
            verdict,
            reason=f"{verdict.reason} Threads also waited {cpu_wait:.2f}s for a CPU: the "
            f"machine was busy (other programs, or more runnable threads than its {cores} "
            f"cores), which limits any speedup.",
        )
    return verdict


def _judge(profile: Profile, runtime: Optional[RuntimeFacts]) -> Verdict:
    base = runtime or _runtime.current()
    facts = RuntimeFacts(
        python_version=base.python_version,
        implementation=base.implementation,
        cores=profile.cores or base.cores,
        gil_enabled=profile.python.gil_enabled,
        free_threaded_build=base.free_threaded_build,
        platform=base.platform,
    )
    wall = max(profile.wall_s, 1e-9)
    threads = profile.threads

    def total(attr: str) -> float:
        return sum(getattr(t, attr) or 0.0 for t in threads)

    held = total("gil_held_s")
    waiting = total("gil_wait_s")
    native = total("native_s")
    io = total("io_wait_s")
    busy = held + native
    wanting_gil = [
        t for t in threads if ((t.gil_held_s or 0.0) + (t.gil_wait_s or 0.0)) >= 0.2 * t.wall_s > 0
    ]
    # Waiting on a lock counts as contention only for threads that also do work: a main
    # thread joining its workers, or idle pool workers, wait on locks without contending.
    lock_contended = sum(
        t.lock_wait_s or 0.0
        for t in threads
        if ((t.gil_held_s or 0.0) + (t.native_s or 0.0)) >= 0.05 * t.wall_s
    )
    held_fraction = profile.held_fraction

    if facts.gil_enabled and held_fraction is None and not held:
        # The GIL holder was not observed (e.g. an attach that could not locate the GIL):
        # running time cannot be split into Python and native, so judge on CPU and waits only.
        busy = max(busy, total("cpu_s"))
        return _unknown_holder_verdict(busy, io, wall)

    if busy + io + waiting + lock_contended < 0.05 * wall:
        return Verdict("idle", "inline", 1.0, "No thread did measurable work or waited on I/O.")

    if not facts.gil_enabled:
        return _free_threaded_verdict(busy, io, wall, facts)

    # Before the GIL check: threads queueing on a lock also wait for the GIL on their way
    # in and out (measured: 3 threads on one lock wait ~0.1 s each for the GIL, ~0.55 s each
    # for the lock), and processes would not remove the lock.
    if lock_contended >= 0.5 * max(busy, 1e-9) and lock_contended >= 2.0 * waiting:
        return Verdict(
            "lock-contention",
            "thread",
            1.0,
            f"Lock contention: working threads spent {lock_contended:.2f}s waiting on the "
            f"program's own locks against {busy:.2f}s of work. No backend fixes this: hold "
            f"locks for less time or give each thread its own data.",
        )

    if len(wanting_gil) >= 2 and waiting >= 0.25 * max(held, 1e-9):
        speedup = parallel_speedup(len(wanting_gil), facts) / max(held_fraction or 1.0, 0.5)
        speedup = round(min(speedup, float(facts.cores)), 2)
        backend = cpu_backend(facts)
        alt = " (or own-GIL sub-interpreters)" if facts.own_gil_subinterpreters else ""
        return Verdict(
            "gil-bound",
            backend,
            speedup,
            f"GIL-bound: {len(wanting_gil)} threads take turns holding the GIL "
            f"({_pct(held_fraction)} of the time held, {waiting:.2f}s spent waiting for it). "
            f"Use processes{alt}: expected {speedup:.1f}x on {facts.cores} cores.",
        )

    if io >= busy and io >= 0.5 * (io + busy + waiting):
        io_threads = sum(1 for t in threads if (t.io_wait_s or 0.0) >= 0.2 * t.wall_s)
        ceiling = (busy + io) / max(busy, 0.01 * wall)
        speedup = round(max(1.0, min(float(MAX_IO_WORKERS), ceiling) / max(1, io_threads)), 2)
        return Verdict(
            "io-bound",
            "thread",
            speedup,
            f"I/O-bound: threads spent {io:.2f}s blocked on I/O or sleep against {busy:.2f}s "
            f"of CPU. Threads (or asyncio) overlap the waits: expected {speedup:.1f}x with "
            f"enough workers.",
        )

    if native >= 0.5 * busy:
        concurrent_native = native / wall
        speedup = round(
            max(1.0, parallel_speedup(facts.cores, facts) / max(concurrent_native, 1.0)), 2
        )
        return Verdict(
            "native-parallel",
            "thread",
            speedup,
            f"Native code with the GIL released: {native:.2f}s of CPU ran outside the GIL "
            f"({concurrent_native:.1f} cores busy on average). Threads already run this in "
            f"parallel; expected {speedup:.1f}x with one thread per core.",
        )

    if len(wanting_gil) <= 1 and held >= 0.5 * wall:
        speedup = parallel_speedup(facts.cores, facts)
        return Verdict(
            "serial",
            cpu_backend(facts),
            speedup,
            f"Serial: one thread runs Python ({_pct(held_fraction)} of the time holding the "
            f"GIL) and nobody waits for it. If the work can be split, processes give up to "
            f"{speedup:.1f}x on {facts.cores} cores.",
        )

    mixed_backend: BackendName = cpu_backend(facts) if held >= io else "thread"
    return Verdict(
        "mixed",
        mixed_backend,
        1.0,
        f"Mixed: {held:.2f}s holding the GIL, {native:.2f}s native, {io:.2f}s in I/O, "
        f"{waiting:.2f}s waiting for the GIL. Split the I/O and the CPU parts "
        f"(gilwise.Pipeline runs each stage on its own model).",
    )


def _unknown_holder_verdict(busy: float, io: float, wall: float) -> Verdict:
    if busy + io < 0.05 * wall:
        return Verdict("idle", "inline", 1.0, "No thread did measurable work or waited on I/O.")
    if io >= busy:
        return Verdict(
            "io-bound",
            "thread",
            1.0,
            f"I/O-bound: threads spent {io:.2f}s blocked on I/O or sleep against {busy:.2f}s "
            f"on a CPU (who held the GIL was not measured). Threads or asyncio overlap waits.",
        )
    return Verdict(
        "mixed",
        "thread",
        1.0,
        f"CPU-busy ({busy / wall:.1f} cores on average), but who held the GIL was not "
        f"measured, so Python and native code cannot be told apart. Profile in-process "
        f"(gilwise profile script.py) for a verdict.",
    )


def _free_threaded_verdict(busy: float, io: float, wall: float, facts: RuntimeFacts) -> Verdict:
    if io >= busy:
        return Verdict(
            "io-bound",
            "thread",
            1.0,
            "I/O-bound on a free-threaded build (GIL off): threads or asyncio overlap the waits.",
        )
    cores_busy = busy / wall
    kind: VerdictKind = "native-parallel" if cores_busy >= 1.5 else "serial"
    speedup = round(max(1.0, parallel_speedup(facts.cores, facts) / max(cores_busy, 1.0)), 2)
    return Verdict(
        kind,
        "thread",
        speedup,
        f"The GIL is off (free-threaded build): threads run Python in parallel "
        f"({cores_busy:.1f} cores busy on average); expected {speedup:.1f}x with one "
        f"thread per core.",
    )


def _pct(fraction: Optional[float]) -> str:
    return "an unknown share" if fraction is None else f"{fraction:.0%}"


# --- tasks ------------------------------------------------------------------------------


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
    loaded machine looks neither like I/O nor like GIL contention.
    """

    wall_s: float
    cpu_s: float
    pair_wall_s: Optional[float] = None
    is_coroutine: bool = False
    calls: int = 1
    pair_cpu_s: Optional[float] = None

    @property
    def cpu_share(self) -> float:
        return min(1.0, self.cpu_s / self.wall_s) if self.wall_s > 0 else 1.0

    @property
    def overlap(self) -> Optional[float]:
        """About 2.0 when two calls run in parallel on threads, about 1.0 when serialised."""
        if self.pair_wall_s is None or self.pair_wall_s <= 0:
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
        why = (
            "the GIL is off (free-threaded build)"
            if not facts.gil_enabled
            else f"two calls on two threads overlapped ({overlap:.2f}x one call's throughput)"
        )
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
    why = (
        f"two calls on two threads serialised on the GIL ({overlap:.2f}x)"
        if overlap is not None
        else "it holds the CPU for the whole call"
    )
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
