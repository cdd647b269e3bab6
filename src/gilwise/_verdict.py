"""What a profile means: ``verdict_for_profile``.

Pure functions of measurements and RuntimeFacts: no clocks, no threads, no I/O. The executor
and the pipeline ask ``_decide.decide_for_task`` (kept apart so that running work does not
import the profile model); both use ``cpu_backend`` and ``parallel_speedup``, so a CPU-bound
profile and a CPU-bound task get the same advice.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

from . import _evidence as ev
from . import _runtime
from ._decide import MAX_IO_WORKERS, PARALLEL_EFFICIENCY, cpu_backend, parallel_speedup
from ._model import QUIET_STATES, BackendName, Profile, ThreadStats, Verdict, VerdictKind
from ._runtime import RuntimeFacts

# --- profiles ---------------------------------------------------------------------------

# Too short to judge: a run shorter than this, or fewer state samples than this, or less
# active time (work plus waits a change could affect) than MIN_WORK_S promises nothing.
MIN_JUDGED_WALL_S = 0.05
MIN_JUDGED_SAMPLES = 50
MIN_WORK_S = 0.03
# Below this share of the wall time, nothing happened worth a verdict ("idle").
IDLE_SHARE = 0.05
# A thread running (Python or native) this share of its own time is saturated: the run is
# about it (serial), never "mostly waiting".
SATURATED_SHARE = 0.5
# Contended lock waits make the verdict when they are this share of the active time...
LOCK_SHARE = 0.25
# A lock waiter with no lock the probe could name must have done this share of its time in
# CPU or I/O of its own for its waits to count as contention (see _lock_waits_are_evidence).
LOCK_WAITER_ACTIVE_SHARE = 0.05
# ... and about this much more than the GIL waits (threads queueing on a lock also wait for
# the GIL on their way in and out: measured ~0.1 s GIL wait against ~0.55 s lock wait each
# for 3 threads on one lock).
LOCK_OVER_GIL_WAIT = 2.0
# The lock's holders spent at least this share of their time off the CPU (in I/O, or
# queued for a core after it): the lock is held across I/O.
LOCK_IO_SHARE = 0.5
# An event loop spent at least this share of its wall time inside one callback's stack
# (CPU or a blocking call) instead of waiting in its selector: the loop was blocked.
LOOP_BLOCKED_SHARE = 0.3
# Threads waiting for the GIL at least this share of the held time make a GIL-bound run.
GIL_WAIT_SHARE = 0.25
# Below this expected gain, GIL waits are a detail of another verdict (a busy thread
# keeping a light one waiting), not the story.
MIN_GIL_BOUND_SPEEDUP = 1.15
# A note joins the verdict when threads waited this share of their busy time for a CPU.
CPU_WAIT_NOTE_SHARE = 0.2
# A followed process counts as a worker of the program when one of its threads ran at
# least this share of its own time.
WORKER_BUSY_SHARE = 0.3
# Kinds that name a problem inside one process; in a whole-program verdict they win.
PROBLEM_KINDS = ("lock-contention", "lock-held-across-io", "loop-blocked", "gil-bound")


def verdict_for_profile(profile: Profile, runtime: Optional[RuntimeFacts] = None) -> Verdict:
    """Judge a Profile: what kind of run it was, which backend to use, the expected speedup.

    ``runtime`` defaults to this process's facts but the profile's own ``cores`` and
    ``python.gil_enabled`` win, so a profile read from JSON is judged for the machine it ran on.
    A profile with followed child processes (``processes``) gets one verdict for the whole
    program. Idle workers, joins and waits for results are never contention. When threads
    spent a good part of their busy time waiting for a CPU (the kernel's run-queue wait), the
    reason says so: the machine, not the GIL, limited that run.
    """
    facts = _facts_for(profile, runtime)
    verdict = _whole_program(profile, facts) if profile.processes else _judge(profile, facts)
    if verdict.kind == "too-short":
        return verdict
    # A whole program's machine: every followed process's threads.
    threads = [t for proc in ev.all_processes(profile) for t in proc.threads]
    cpu_wait = sum(t.cpu_wait_s or 0.0 for t in threads)
    busy = sum(ev.busy_s(t) for t in threads)
    if cpu_wait >= CPU_WAIT_NOTE_SHARE * max(busy, 1e-9) and cpu_wait >= 0.05 * profile.wall_s:
        verdict = replace(
            verdict,
            reason=f"{verdict.reason} Threads also waited {cpu_wait:.2f}s for a CPU: the "
            f"machine was busy (other programs, or more runnable threads than its "
            f"{facts.cores} cores), which limits any speedup.",
        )
    return verdict


def _facts_for(profile: Profile, runtime: Optional[RuntimeFacts]) -> RuntimeFacts:
    base = runtime or _runtime.current()
    return RuntimeFacts(
        python_version=base.python_version,
        implementation=base.implementation,
        cores=profile.cores or base.cores,
        gil_enabled=profile.python.gil_enabled,
        free_threaded_build=base.free_threaded_build,
        platform=base.platform,
    )


def amdahl_speedup(
    wall_s: float,
    parallel_s: float,
    streams: int,
    cores: int,
    *,
    most_saved_s: Optional[float] = None,
) -> float:
    """Expected speedup when ``parallel_s`` of a ``wall_s`` run spreads over ``streams``
    workers on ``cores`` cores and the rest stays serial; never above the cores, and never
    saving more than ``most_saved_s`` (the work that could move beside the rest)."""
    usable = min(cores, streams)
    parallel_s = min(max(parallel_s, 0.0), wall_s)
    if usable <= 1 or parallel_s <= 0 or wall_s <= 0:
        return 1.0
    saved_s = parallel_s - parallel_s / (usable * PARALLEL_EFFICIENCY)
    if most_saved_s is not None:
        saved_s = min(saved_s, max(most_saved_s, 0.0))
    new_wall_s = wall_s - saved_s
    return round(max(1.0, min(float(cores), wall_s / new_wall_s)), 2)


def _judge(profile: Profile, facts: RuntimeFacts) -> Verdict:
    """The verdict of one process's profile."""
    sums = ev.totals(profile)
    wall = sums.wall_s

    if facts.gil_enabled and profile.held_fraction is None and not sums.held_s:
        # The GIL holder was not observed (e.g. an attach that could not locate the GIL):
        # running time cannot be split into Python and native, so judge on CPU and waits only.
        cpu = sum(t.cpu_s or 0.0 for t in profile.threads)
        return _unknown_holder_verdict(max(sums.busy_s, cpu), sums.io_s, wall)

    too_short = _too_short(profile, sums)
    if too_short is not None:
        return too_short
    if sums.active_s < IDLE_SHARE * wall or _mostly_waited(profile, sums):
        return _idle_verdict(profile, sums)
    if sums.activity_s < MIN_WORK_S:
        return _too_short_verdict(profile, sums)
    if not facts.gil_enabled:
        return _free_threaded_verdict(sums.busy_s, sums.io_s, wall, facts)

    blocks = ev.loop_blocks(profile)
    if blocks and blocks[0].blocked_s >= LOOP_BLOCKED_SHARE * blocks[0].thread.wall_s:
        return _loop_blocked_verdict(blocks[0])

    # Against the lock waits, count the CPU really used (see Totals.work_s).
    working_s = sums.work_s + sums.io_s + sums.gil_wait_s + sums.lock_s
    lock_evidence = _lock_waits_are_evidence(profile)
    if (
        lock_evidence
        and sums.lock_s >= max(LOCK_SHARE * working_s, MIN_WORK_S)
        and sums.lock_s >= LOCK_OVER_GIL_WAIT * _gil_wait_beside_locks(profile, sums)
    ):
        return _lock_verdict(profile, sums)

    wanting = ev.wanting_gil(profile)
    if len(wanting) >= 2 and sums.gil_wait_s >= GIL_WAIT_SHARE * max(sums.held_s, 1e-9):
        gil_bound = _gil_bound_verdict(profile, sums, wanting, facts)
        if gil_bound.expected_speedup >= MIN_GIL_BOUND_SPEEDUP:
            return gil_bound

    # Against I/O, count the CPU really used: on a loaded machine threads that woke from a
    # wait queue for a core, which reads as running.
    if sums.io_s >= max(sums.work_s, MIN_WORK_S) and sums.io_s >= 0.5 * (
        sums.io_s + sums.work_s + sums.gil_wait_s
    ):
        return _io_verdict(profile, sums, facts)

    if sums.native_s >= 0.5 * sums.busy_s:
        concurrent_native = sums.native_s / wall
        speedup = round(
            max(1.0, parallel_speedup(facts.cores, facts) / max(concurrent_native, 1.0)), 2
        )
        return Verdict(
            "native-parallel",
            "thread",
            speedup,
            f"Native code with the GIL released: {sums.native_s:.2f}s of CPU ran outside the "
            f"GIL ({concurrent_native:.1f} cores busy on average){_where(profile, 'native_s')}. "
            f"Threads already run this in parallel; expected {speedup:.1f}x with one thread "
            f"per core.{_quiet_note(sums)}",
        )

    runner = _saturated_thread(profile, sums, wanting)
    if runner is not None:
        return _serial_verdict(profile, sums, runner, facts)

    mixed_backend: BackendName = cpu_backend(facts) if sums.held_s >= sums.io_s else "thread"
    return Verdict(
        "mixed",
        mixed_backend,
        1.0,
        f"Mixed: {sums.held_s:.2f}s holding the GIL, {sums.native_s:.2f}s native, "
        f"{sums.io_s:.2f}s in I/O, {sums.gil_wait_s:.2f}s waiting for the GIL. Split the I/O "
        f"and the CPU parts (gilwise.Pipeline runs each stage on its own model)."
        f"{_quiet_note(sums)}",
    )


def _mostly_waited(profile: Profile, sums: ev.Totals) -> bool:
    """The threads waited (results, joins, idle) at least half the run and none of them was
    active (running, ready to run, in I/O, waiting for the GIL or a contended lock) most of
    its own time: a pool parent, a coordinator. Idle threads beside a busy one (a sleeper, a
    saturated stage) never make a run "mostly waiting"."""
    if not sums.reasons_known or sums.quiet_s < sums.wall_s / 2:
        return False
    share = ev.contended_share(profile)
    return all(
        ev.busy_s(t) + (t.io_wait_s or 0.0) + (t.gil_wait_s or 0.0) + ev.contended_lock_s(t, share)
        < SATURATED_SHARE * t.wall_s
        for t in profile.threads
    )


def _too_short(profile: Profile, sums: ev.Totals) -> Optional[Verdict]:
    if sums.wall_s < MIN_JUDGED_WALL_S or 0 < profile.samples < MIN_JUDGED_SAMPLES:
        return _too_short_verdict(profile, sums)
    return None


def _too_short_verdict(profile: Profile, sums: ev.Totals) -> Verdict:
    samples = f" ({profile.samples} samples)" if profile.samples else ""
    return Verdict(
        "too-short",
        "inline",
        1.0,
        f"Too short to judge: the run lasted {sums.wall_s * 1000:.1f} ms{samples} with "
        f"{sums.activity_s * 1000:.1f} ms of work and waits; a verdict needs at least "
        f"{MIN_JUDGED_WALL_S * 1000:.0f} ms, {MIN_JUDGED_SAMPLES} samples and "
        f"{MIN_WORK_S * 1000:.0f} ms of activity. Profile a longer run (or loop over the "
        f"real work).",
    )


def _idle_verdict(profile: Profile, sums: ev.Totals) -> Verdict:
    waits = [
        (seconds, what)
        for seconds, what in (
            (sums.result_wait_s, "waiting for results"),
            (sums.join_wait_s, "joining threads or processes"),
            (sums.idle_s, "idle workers waiting for work"),
        )
        if seconds >= 0.01
    ]
    if not waits:
        return Verdict("idle", "inline", 1.0, "No thread did measurable work or waited on I/O.")
    said = ", ".join(f"{seconds:.2f}s {what}" for seconds, what in waits)
    elsewhere = _waits_on_processes(profile)
    backend: BackendName = "process" if elsewhere else "inline"
    where = (
        " The work it waited for ran in other processes"
        + (
            " (followed: see their sections)."
            if profile.processes
            else ", which were not profiled: `gilwise profile --subprocesses` follows them."
        )
        if elsewhere
        else ""
    )
    return Verdict(
        "idle",
        backend,
        1.0,
        f"This process mostly waited ({said}) and worked {sums.busy_s:.2f}s of its "
        f"{sums.wall_s:.2f}s: waiting is not contention, and nothing here would run faster "
        f"on another backend.{where}",
    )


_PROCESS_POOL_FILES = ("multiprocessing/", "concurrent/futures/process.py", "gilwise/backends/")


def _waits_on_processes(profile: Profile) -> bool:
    """True when the process waited in multiprocessing or a process pool (stacks or functions)."""
    files = [f.file for f in profile.functions]
    files += [frame.file for s in profile.stacks if s.state in QUIET_STATES for frame in s.frames]
    return any(marker in file for file in files for marker in _PROCESS_POOL_FILES)


def _loop_blocked_verdict(block: ev.LoopBlock) -> Verdict:
    how = {
        "gil_held": "running Python (CPU)",
        "gil_wait": "waiting for the GIL",
        "native": "in native code",
        "io_wait": "in a blocking call (I/O or sleep)",
        "lock_wait": "waiting for a lock",
    }.get(block.state, block.state)
    share = block.blocked_s / max(block.thread.wall_s, 1e-9)
    inner = "" if block.innermost == block.coroutine else f", at {block.innermost}"
    return Verdict(
        "loop-blocked",
        "asyncio",
        1.0,
        f"Event loop blocked: thread {block.thread.name} ran its asyncio loop but spent "
        f"{block.blocked_s:.2f}s ({share:.0%} of its time) inside callbacks instead of "
        f"waiting for events, mostly {how} in {block.coroutine}{inner}. Nothing else on the "
        f"loop runs meanwhile. Move the blocking call or the CPU work off the loop: "
        f"`await asyncio.to_thread(...)` or `loop.run_in_executor(...)` (a process pool for "
        f"CPU), or use an async library for the I/O.",
    )


def _gil_wait_beside_locks(profile: Profile, sums: ev.Totals) -> float:
    """GIL waits other than those while a contended lock had waiters. Those are the lock's
    doing: its holder runs Python (holding the GIL) while the others queue for the lock or,
    on their way to it and out of it, for the GIL; on a busy machine, where the holder is
    often off a CPU, they grow (the lock-contention calibration program at load ~4: 0.195 of
    0.217 s of GIL wait while the lock had waiters, judged gil-bound 1 run in 8)."""
    during = sum(lock.holder_states.get("gil_wait", 0.0) for lock in profile.locks)
    return max(0.0, sums.gil_wait_s - during)


def _lock_waits_are_evidence(profile: Profile) -> bool:
    """False when stacks told the wait reasons, the probe tied no wait to a contended lock,
    and the threads that waited did nothing else (no CPU, no I/O of their own): such waits
    are idle threads whose stacks were not re-read in time (e.g. many pool workers waking at
    shutdown), not contention."""
    if profile.locks or not any(ev.quiet_s(t) is not None for t in profile.threads):
        return True
    return any(
        (t.cpu_s or 0.0) + (t.io_wait_s or 0.0) >= LOCK_WAITER_ACTIVE_SHARE * t.wall_s
        for t in ev.lock_waiters(profile)
    )


def _lock_verdict(profile: Profile, sums: ev.Totals) -> Verdict:
    lock = ev.top_lock(profile)
    waiters = ev.lock_waiters(profile)
    names = _names([t.name for t in waiters]) if waiters else "threads"
    involved = [t for t in profile.threads if lock is None or t.name in lock.waiters]
    io_share = ev.off_cpu_share_of_holders(lock, involved) if lock is not None else None
    if io_share is None:
        # No holder evidence: the waiting threads' own time says what they do when they
        # get the lock.
        io_share = ev.io_share_of_threads(waiters or list(profile.threads))
    which = f"lock {lock.label}" if lock is not None else "a lock"
    longest = f" (longest single wait {lock.longest_wait_s:.2f}s)" if lock is not None else ""
    # held_across reads "<state> in <function> (<file:line>)": the I/O verdict names the
    # function (the state sampled there may be a wake-up waiting for a core).
    site = lock.held_across.split(" in ", 1)[-1] if lock is not None and lock.held_across else ""
    held = f"; the lock is held across I/O in {site}" if site else ""
    if io_share >= LOCK_IO_SHARE:
        return Verdict(
            "lock-held-across-io",
            "thread",
            1.0,
            f"Lock held across I/O: {names} spent {sums.lock_s:.2f}s waiting for {which}"
            f"{longest} while its holder was blocked in I/O or waiting to run after it "
            f"({io_share:.0%} of the holders' time{held}). The lock serialises the I/O: "
            f"more threads (or processes) cannot help. Shrink the critical section: do the "
            f"I/O outside the lock, or give each thread its own file or connection.",
        )
    contended = (
        f" (held across {lock.held_across})" if lock is not None and lock.held_across else ""
    )
    return Verdict(
        "lock-contention",
        "thread",
        1.0,
        f"Lock contention: {names} spent {sums.lock_s:.2f}s waiting for {which}{longest} "
        f"against {sums.busy_s:.2f}s of work{contended}. No backend fixes this: hold the lock "
        f"for less time or give each thread its own data.",
    )


def _gil_bound_verdict(
    profile: Profile, sums: ev.Totals, wanting: list[ThreadStats], facts: RuntimeFacts
) -> Verdict:
    # Amdahl: the GIL-held time during which another thread waited could run in parallel;
    # the rest of the run stays as long as it was. No run gets shorter than its busiest
    # thread's own Python time: at most the others' share can be overlapped away.
    # ... and only while at least two of the threads existed.
    walls = sorted((t.wall_s for t in wanting), reverse=True)
    parallel_s = min(sums.held_s, sums.gil_wait_s, walls[1])
    others_s = sums.held_s - max(t.gil_held_s or 0.0 for t in wanting)
    speedup = amdahl_speedup(
        sums.wall_s, parallel_s, len(wanting), facts.cores, most_saved_s=others_s
    )
    backend = cpu_backend(facts)
    alt = " (or own-GIL sub-interpreters)" if facts.own_gil_subinterpreters else ""
    return Verdict(
        "gil-bound",
        backend,
        speedup,
        f"GIL-bound: {len(wanting)} threads ({_names([t.name for t in wanting])}) take turns "
        f"holding the GIL ({_pct(profile.held_fraction)} of the time held, "
        f"{sums.gil_wait_s:.2f}s spent waiting for it){_where(profile, 'gil_held_s')}. "
        f"{parallel_s:.2f}s of the {sums.wall_s:.2f}s run could run in parallel. Use "
        f"processes{alt}: expected {speedup:.1f}x on {facts.cores} cores.{_quiet_note(sums)}",
    )


def _io_verdict(profile: Profile, sums: ev.Totals, facts: RuntimeFacts) -> Verdict:
    threads = profile.threads
    io_threads = max(1, sum(1 for t in threads if (t.io_wait_s or 0.0) >= 0.2 * t.wall_s))
    waits = ev.io_waits(profile)
    if waits is None:
        ceiling = (sums.busy_s + sums.io_s) / max(sums.busy_s, 0.01 * sums.wall_s)
        speedup = round(max(1.0, min(float(MAX_IO_WORKERS), ceiling) / io_threads), 2)
        counted = ""
    else:
        # All waits overlapped at best: the run still needs its CPU (Python one thread at a
        # time) and its longest single wait.
        overlap = max(1, min(waits.count, MAX_IO_WORKERS))
        floor_s = max(
            sums.held_s + sums.native_s / max(facts.cores, 1),
            sums.io_s / overlap,
            waits.longest_s,
            1e-9,
        )
        speedup = round(max(1.0, min(float(MAX_IO_WORKERS), sums.wall_s / floor_s)), 2)
        counted = f" in {waits.count} separate waits (longest {waits.longest_s:.2f}s)"
    if speedup < 1.1:
        speedup = 1.0
        advice = "The waits already overlap (or there is only one): more threads cannot help."
    else:
        advice = (
            f"Threads (or asyncio) overlap the waits: expected {speedup:.1f}x with enough workers."
        )
    return Verdict(
        "io-bound",
        "thread",
        speedup,
        f"I/O-bound: {io_threads} thread{'s' if io_threads != 1 else ''} spent "
        f"{sums.io_s:.2f}s blocked on I/O or sleep{counted} against {sums.busy_s:.2f}s of "
        f"CPU{_where(profile, 'io_wait_s')}. {advice}{_quiet_note(sums)}",
    )


def _saturated_thread(
    profile: Profile, sums: ev.Totals, wanting: list[ThreadStats]
) -> Optional[ThreadStats]:
    """The one thread running Python most of its time and doing most of the run's work
    (others may want the GIL too, with too little of their own to gain from processes)."""
    if not profile.threads:
        return None
    runner = wanting[0] if wanting else max(profile.threads, key=lambda t: t.gil_held_s or 0.0)
    held = runner.gil_held_s or 0.0
    if held >= 0.5 * runner.wall_s and held >= 0.5 * sums.busy_s:
        return runner
    return None


def _serial_verdict(
    profile: Profile, sums: ev.Totals, runner: ThreadStats, facts: RuntimeFacts
) -> Verdict:
    share = (runner.gil_held_s or 0.0) / max(runner.wall_s, 1e-9)
    others_wait_s = sums.gil_wait_s - (runner.gil_wait_s or 0.0)
    waiting = (
        f" (other threads, with little Python of their own, waited {others_wait_s:.2f}s "
        f"for the GIL it held)"
        if others_wait_s >= 0.05 * sums.wall_s
        else ""
    )
    if_split = parallel_speedup(facts.cores, facts)
    return Verdict(
        "serial",
        cpu_backend(facts),
        1.0,
        f"Serial: one thread ({runner.name}) runs Python, holding the GIL {share:.0%} of its "
        f"time{_where(profile, 'gil_held_s')}: that thread is the saturated part{waiting}. "
        f"As written nothing else could run beside it; if its work can be split "
        f"into independent pieces, processes could use the {facts.cores} cores (up to "
        f"{if_split:.1f}x).{_quiet_note(sums)}",
    )


def _whole_program(profile: Profile, facts: RuntimeFacts) -> Verdict:
    """One verdict for a program and its followed child processes."""
    processes = ev.all_processes(profile)
    per_process = [(proc, ev.totals(proc)) for proc in processes]
    children_busy = sum(sums.busy_s for _, sums in per_process[1:])
    if children_busy < MIN_WORK_S:
        return _judge(profile, facts)
    for proc, sums in per_process:
        if sums.busy_s + sums.lock_s < MIN_WORK_S:
            continue
        verdict = _judge(proc, facts)
        if verdict.kind in PROBLEM_KINDS:
            label = (
                "the main process" if proc is profile else f"child process {ev.process_label(proc)}"
            )
            return replace(verdict, reason=f"In {label}: {verdict.reason}")
    wall = max(profile.wall_s, 1e-9)
    held = sum(sums.held_s for _, sums in per_process)
    native = sum(sums.native_s for _, sums in per_process)
    # A process is a worker when one of its threads ran (or was ready to run) a good part
    # of its own time: a pool parent's start-up and plumbing do not make it one.
    workers = [
        p
        for p, _ in per_process
        if any(ev.busy_s(t) >= WORKER_BUSY_SHARE * max(t.wall_s, 1e-9) for t in p.threads)
    ]
    # Concurrency while the workers lived (the parent's start-up and teardown are not a
    # shortfall of the pool).
    span_s = max((p.wall_s for p in workers), default=wall) if workers else wall
    worker_busy = sum(
        sums.busy_s for p, sums in per_process if any(p is worker for worker in workers)
    )
    cores_busy = worker_busy / max(span_s, 1e-9) if workers else (held + native) / wall
    streams = len(workers)
    possible = min(facts.cores, max(streams, 1)) * PARALLEL_EFFICIENCY
    speedup = round(min(float(facts.cores), max(1.0, possible / max(cores_busy, 1.0))), 2)
    kind: VerdictKind = "gil-bound" if held >= native else "native-parallel"
    work = "Python" if kind == "gil-bound" else "native code"
    parent = per_process[0][1]
    waited = parent.result_wait_s + parent.join_wait_s
    idled = f" (and its idle pool threads {parent.idle_s:.2f}s)" if parent.idle_s >= 0.01 else ""
    parent_note = (
        f" The main process ({ev.process_label(profile)}) waited {waited:.2f}s for their "
        f"results or exits{idled}: waiting is not contention."
        if waited + parent.idle_s >= 0.01
        else ""
    )
    pids = ", ".join(ev.process_label(p) for p in workers) or "none"
    if streams >= 2 and speedup < 1.25:
        advice = f"Already parallel on processes: no backend does better on {facts.cores} cores."
    elif streams >= 2:
        advice = (
            f"The processes overlapped only partly: expected {speedup:.1f}x with the work "
            f"spread evenly over {facts.cores} cores (larger or more even chunks)."
        )
    else:
        speedup = 1.0
        advice = (
            f"Only one process did the work: if it can be split into independent pieces, "
            f"a pool of {facts.cores} processes could use the {facts.cores} cores."
        )
    return Verdict(
        kind,
        cpu_backend(facts),
        speedup,
        f"Whole program ({len(processes)} processes): {streams} of them ran {work} "
        f"({pids}; {held:.2f}s holding their GILs, {native:.2f}s native), running or ready "
        f"to run on {cores_busy:.1f} of {facts.cores} cores on average while they ran."
        f"{parent_note} {advice}",
    )


def _where(profile: Profile, attr: str) -> str:
    top = ev.top_function(profile, attr)
    return f", mostly in {top}" if top else ""


def _quiet_note(sums: ev.Totals) -> str:
    if sums.quiet_s < 0.01:
        return ""
    parts = [
        f"{seconds:.2f}s {what}"
        for seconds, what in (
            (sums.idle_s, "idle (workers waiting for work)"),
            (sums.join_wait_s, "joining"),
            (sums.result_wait_s, "waiting for results"),
        )
        if seconds >= 0.01
    ]
    return f" Not counted as contention: {', '.join(parts)}."


def _names(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    more = len(names) - limit
    return f"{shown} and {more} more" if more > 0 else shown


def _unknown_holder_verdict(busy: float, io: float, wall: float) -> Verdict:
    if busy + io < IDLE_SHARE * wall:
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
