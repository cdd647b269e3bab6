"""One plain sentence per experiment, computed from its measured rows and the runtime facts.

Pure functions: no measuring, so tests can feed made-up numbers and injected RuntimeFacts
(a free-threaded build, one core, Python 3.12) and check what the sentence says.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

from .._runtime import RuntimeFacts
from ._results import ExperimentResult, Row

#: Below this a "parallel" way did not really run in parallel; at or above it, it did.
SCALES_AT = 1.35
#: A sequential CPU-bound run that got less of a core than this was competing with other
#: programs, so its speedups say more about the machine's load than about the GIL.
BUSY_BELOW_CORE_SHARE = 0.8
#: Other programs keeping more cores than this busy make the ratios unreliable.
BUSY_OTHER_CORES = 0.3
#: Parallel workers that needed this many times the CPU the sequential run needed for the
#: same loops ran on slower cores: on a VM whose two vCPUs share a physical core (or a busy
#: host) two loops at once each run slower, so 2 processes cannot reach 2x.
SLOWER_IN_PARALLEL_AT = 1.25
#: Waiting-bound work with 20 requests in flight should gain at least this much.
IO_GAINS_AT = 3.0


def explain(result: ExperimentResult, facts: RuntimeFacts) -> ExperimentResult:
    """The same result with its ``sentence`` filled in; ValueError for an unknown experiment."""
    writers = {"cpu": _cpu, "io": _io, "native": _native}
    try:
        writer = writers[result.name]
    except KeyError:
        raise ValueError(f"no explanation for experiment {result.name!r}") from None
    sentence = writer(result, facts)
    if result.name in ("cpu", "native"):
        sentence = _busy_warning(result, sentence)
    return replace(result, sentence=sentence)


def _busy_warning(result: ExperimentResult, sentence: str) -> str:
    """Append a warning when other programs competed for the CPU during the measurement."""
    reasons = []
    if result.other_programs_cores is not None and result.other_programs_cores > BUSY_OTHER_CORES:
        reasons.append(f"other programs kept {result.other_programs_cores:.1f} cores busy")
    sequential = next((row for row in result.rows if row.is_sequential and row.available), None)
    if sequential is not None and sequential.wall_s and sequential.cpu_s is not None:
        core_share = sequential.cpu_s / sequential.wall_s
        if core_share < BUSY_BELOW_CORE_SHARE:
            reasons.append(f"the sequential run got only {core_share:.0%} of a core")
    slowdown = parallel_cpu_slowdown(result)
    if slowdown is not None and slowdown >= SLOWER_IN_PARALLEL_AT:
        reasons.append(
            f"the 2 processes needed {slowdown:.2f}x the CPU time of the sequential run for "
            "the same loops (two loops at once ran on slower cores: shared hardware or a busy "
            "virtual machine host)"
        )
    if not reasons:
        return sentence
    return (
        f"{sentence[:-1]}; careful: {' and '.join(reasons)} while measuring, so these ratios "
        "say more about this machine's load than about the GIL."
    )


def parallel_cpu_slowdown(result: ExperimentResult) -> Optional[float]:
    """CPU seconds the processes row spent for the loops over the sequential row's (1.0:
    each core ran as fast as one alone); None when either row lacks a CPU figure."""
    sequential = next((row for row in result.rows if row.is_sequential and row.available), None)
    processes = _find(result, "processes")
    if sequential is None or processes is None or not processes.available:
        return None
    if not sequential.cpu_s or processes.cpu_s is None:
        return None
    return processes.cpu_s / sequential.cpu_s


def speedup_text(speedup: Optional[float]) -> str:
    """ "1.93x" (one decimal from 10x up); "n/a" when not measured."""
    if speedup is None:
        return "n/a"
    return f"{speedup:.1f}x" if speedup >= 10 else f"{speedup:.2f}x"


def _find(result: ExperimentResult, way: str, workload: Optional[str] = None) -> Optional[Row]:
    try:
        return result.row(way, workload)
    except KeyError:
        return None


def _speedup(row: Optional[Row]) -> Optional[float]:
    return None if row is None else row.speedup_vs_sequential


def _scaled(speedup: Optional[float], at: float = SCALES_AT) -> bool:
    return speedup is not None and speedup >= at


def _cpu(result: ExperimentResult, facts: RuntimeFacts) -> str:
    threads = _speedup(_find(result, "threads"))
    processes = _speedup(_find(result, "processes"))
    interpreters = _find(result, "sub-interpreters")
    t, p = speedup_text(threads), speedup_text(processes)
    if facts.cores < 2:
        return (
            f"With 1 usable core nothing runs in parallel, so threads ({t}) and processes "
            f"({p}) cannot beat running the loops one after the other."
        )

    if interpreters is None or not interpreters.available:
        why = interpreters.note if interpreters is not None else "not run"
        tail = f"; sub-interpreters were not measured: {why}"
    else:
        i = speedup_text(interpreters.speedup_vs_sequential)
        if _scaled(interpreters.speedup_vs_sequential):
            tail = f", and sub-interpreters, each with its own GIL in this one process, reached {i}"
        else:
            tail = f", while sub-interpreters reached only {i} (is the machine busy?)"

    if _scaled(processes):
        processes_part = f"2 processes reached {p} because each has its own interpreter and GIL"
    else:
        processes_part = (
            f"2 processes reached only {p}, less than 2 cores allow (is the machine busy, "
            "or --scale too small for the hand-over cost?)"
        )

    if facts.threads_run_python_in_parallel:
        if _scaled(threads):
            threads_part = (
                "This interpreter runs without a GIL, so threads now scale: 2 threads ran "
                f"the pure-Python loop at {t}"
            )
        else:
            threads_part = (
                f"This interpreter runs without a GIL, yet 2 threads reached only {t} "
                "(is the machine busy?)"
            )
        return f"{threads_part}; {processes_part}{tail}."

    if _scaled(threads):
        threads_part = (
            f"2 threads reached {t}, more than a GIL should allow (was the sequential run "
            "slowed by other load?)"
        )
    else:
        threads_part = (
            f"2 threads ran at {t} because the loop is pure Python and only the thread "
            "holding the GIL can run it, so they take turns"
        )
    return f"{threads_part}, while {processes_part}{tail}."


def _io(result: ExperimentResult, facts: RuntimeFacts) -> str:
    threads_row = _find(result, "threads")
    threads = _speedup(threads_row)
    asyncio_ = _speedup(_find(result, "asyncio"))
    t, a = speedup_text(threads), speedup_text(asyncio_)
    in_flight = threads_row.workers if threads_row is not None else 0
    if _scaled(threads, IO_GAINS_AT) and _scaled(asyncio_, IO_GAINS_AT):
        return (
            "Each download mostly waits for the server and a waiting thread releases the "
            f"GIL, so {in_flight} threads reached {t} and asyncio, with {in_flight} requests "
            f"in flight on a single thread, reached {a}: for waiting, the GIL is not the "
            "limit, the number of requests in flight is."
        )
    return (
        f"Threads ({t}) and asyncio ({a}) gained less than waiting-bound work should, "
        "although a waiting thread releases the GIL: with this little latency per request "
        "the clients' own work dominates (try a larger --latency-ms)."
    )


def _native(result: ExperimentResult, facts: RuntimeFacts) -> str:
    sha = _speedup(_find(result, "threads", "sha256"))
    s = speedup_text(sha)
    matmul = _find(result, "threads", "numpy matmul")
    numpy_measured = matmul is not None and matmul.available
    if matmul is None or not matmul.available:
        numpy_part = f"; NumPy was not measured: {matmul.note if matmul else 'not run'}"
    else:
        m = speedup_text(matmul.speedup_vs_sequential)
        numpy_part = (
            f" and multiplied matrices at {m} (BLAS limited to one thread per call, so the "
            "gain comes from our 2 threads, not from BLAS's own)"
        )
    if facts.cores < 2:
        return (
            "With 1 usable core even C code that releases the GIL cannot run in parallel: "
            f"2 threads hashed at {s}{numpy_part}."
        )
    if _scaled(sha):
        releasers = "hashlib and BLAS release" if numpy_measured else "hashlib releases"
        lead = f"{releasers} the GIL while the C code runs, so 2 threads hashed at {s}"
    else:
        lead = (
            f"hashlib releases the GIL, yet 2 threads hashed at only {s} (is the machine "
            "busy, or --scale too small?)"
        )
    return f"{lead}{numpy_part}; only the Python between the calls needs the GIL."
