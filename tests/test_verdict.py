"""verdict.py on synthetic profiles and task measurements whose right answer is known."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gilwise._decide import TaskMeasurement, decide_for_task
from gilwise._model import (
    Frame,
    FunctionStats,
    LockStats,
    Profile,
    PythonInfo,
    StackStats,
    StateSpan,
    ThreadStats,
)
from gilwise._runtime import RuntimeFacts
from gilwise._verdict import amdahl_speedup, verdict_for_profile

TWO_CORES = RuntimeFacts((3, 11, 7), "CPython", 2, True, False, "linux")
FREE_THREADED = RuntimeFacts((3, 13, 0), "CPython", 2, False, True, "linux")


def _thread(name, wall=1.0, held=0.0, wait=0.0, native=0.0, io=0.0, lock=0.0):
    return ThreadStats(name, hash(name) & 0xFFFF, wall, held + native, held, wait, native, io, lock)


def _profile(*threads, held_fraction=1.0, gil=True):
    return Profile(PythonInfo("3.11.7", "CPython", gil), 2, 1.0, held_fraction, tuple(threads))


@pytest.mark.parametrize(
    ("threads", "held_fraction", "kind", "backend"),
    [
        (
            [_thread("a", held=0.5, wait=0.5), _thread("b", held=0.5, wait=0.5)],
            1.0,
            "gil-bound",
            "process",
        ),
        ([_thread("a", held=1.0)], 1.0, "serial", "process"),
        ([_thread("a", native=1.0), _thread("b", native=1.0)], 0.0, "native-parallel", "thread"),
        (
            [_thread("a", io=0.95, held=0.05), _thread("b", io=0.95, held=0.05)],
            0.1,
            "io-bound",
            "thread",
        ),
        (
            [_thread("a", held=0.5, lock=0.5), _thread("b", held=0.5, lock=0.5)],
            1.0,
            "lock-contention",
            "thread",
        ),
        ([_thread("a"), _thread("b", lock=1.0)], 0.0, "idle", "inline"),
    ],
)
def test_profile_verdicts(threads, held_fraction, kind, backend):
    verdict = verdict_for_profile(_profile(*threads, held_fraction=held_fraction), TWO_CORES)
    assert verdict.kind == kind
    assert verdict.recommended_backend == backend
    assert verdict.reason


def test_gil_bound_on_two_cores_expects_about_1_9x():
    threads = [_thread("a", held=0.5, wait=0.5), _thread("b", held=0.5, wait=0.5)]
    verdict = verdict_for_profile(_profile(*threads), TWO_CORES)
    assert verdict.expected_speedup == pytest.approx(1.9, abs=0.01)
    assert "1.9x on 2 cores" in verdict.reason


def test_free_threaded_profile_recommends_threads():
    threads = [_thread("a", native=1.0), _thread("b", native=1.0)]
    profile = _profile(*threads, held_fraction=None, gil=False)
    verdict = verdict_for_profile(profile, FREE_THREADED)
    assert verdict.recommended_backend == "thread"
    assert "GIL is off" in verdict.reason


@pytest.mark.parametrize(
    ("measured", "kind", "backend"),
    [
        (TaskMeasurement(wall_s=0.1, cpu_s=0.001), "io-bound", "thread"),
        (TaskMeasurement(wall_s=0.1, cpu_s=0.001, is_coroutine=True), "io-bound", "asyncio"),
        (TaskMeasurement(wall_s=0.1, cpu_s=0.1, pair_wall_s=0.2), "gil-bound", "process"),
        (TaskMeasurement(wall_s=0.1, cpu_s=0.1, pair_wall_s=0.105), "native-parallel", "thread"),
        (TaskMeasurement(wall_s=0.00001, cpu_s=0.00001), "tiny", "inline"),
    ],
)
def test_task_decisions(measured, kind, backend):
    decision = decide_for_task(measured, TWO_CORES)
    assert (decision.kind, decision.backend) == (kind, backend)
    assert decision.workers >= 1


def test_gil_bound_task_runs_on_threads_when_the_gil_is_off():
    decision = decide_for_task(TaskMeasurement(0.1, 0.1, pair_wall_s=0.1), FREE_THREADED)
    assert decision.backend == "thread"


def test_io_bound_task_gets_more_workers_than_cores():
    decision = decide_for_task(TaskMeasurement(wall_s=0.05, cpu_s=0.0005), TWO_CORES)
    assert decision.workers > TWO_CORES.cores


def test_unknown_gil_holder_is_not_called_idle():
    """An attach that could not find the GIL has states but no holder: busy threads are busy."""
    busy = ThreadStats("a", 1, 1.0, 0.95, None, None, None, 0.0, 0.0)
    profile = _profile(busy, busy, held_fraction=None)
    verdict = verdict_for_profile(profile, TWO_CORES)
    assert verdict.kind == "mixed"
    assert "not measured" in verdict.reason


def test_a_run_starved_of_cpu_says_so_in_the_reason():
    threads = [replace(_thread(f"hasher-{i}", native=0.5), cpu_wait_s=0.3) for i in range(4)]
    starved = verdict_for_profile(_profile(*threads, held_fraction=0.0), TWO_CORES)
    assert starved.kind == "native-parallel"
    assert "Threads also waited 1.20s for a CPU" in starved.reason
    assert "more runnable threads than its 2 cores" in starved.reason
    fed = [replace(t, cpu_wait_s=0.01) for t in threads]
    assert (
        "for a CPU" not in verdict_for_profile(_profile(*fed, held_fraction=0.0), TWO_CORES).reason
    )


# --- verdicts from evidence (issue 11) ---------------------------------------------------

# Frames as the probe reports them (root first), for stack-based evidence.
RUN_ONCE = Frame("BaseEventLoop._run_once", "/usr/lib/python3.11/asyncio/base_events.py", 1910)
HANDLE = Frame("Handle._run", "/usr/lib/python3.11/asyncio/events.py", 80)
STEP = Frame("Task.__step", "/usr/lib/python3.11/asyncio/tasks.py", 267)
SELECT = Frame("EpollSelector.select", "/usr/lib/python3.11/selectors.py", 468)
LOOP_ROOT = (
    Frame("<module>", "/app/serve.py", 30),
    Frame("run", "/usr/lib/python3.11/asyncio/runners.py", 190),
    Frame("BaseEventLoop.run_forever", "/usr/lib/python3.11/asyncio/base_events.py", 607),
    RUN_ONCE,
)


def _waiter(name, wall=1.0, held=0.0, wait=0.0, native=0.0, io=0.0, lock=0.0, **reasons):
    """A thread whose wait reasons were told by its stacks (idle/join/result default 0)."""
    return replace(
        _thread(name, wall, held, wait, native, io, lock),
        idle_s=reasons.get("idle", 0.0),
        join_wait_s=reasons.get("join", 0.0),
        result_wait_s=reasons.get("result", 0.0),
    )


def _evidence_profile(*threads, wall=1.0, held_fraction=1.0, **fields):
    profile = Profile(PythonInfo("3.11.7", "CPython", True), 2, wall, held_fraction, tuple(threads))
    return replace(profile, **fields)


@pytest.mark.parametrize(("wall_s", "samples"), [(0.002, 4), (0.03, 30), (1.0, 20)])
def test_a_run_too_short_to_judge_promises_nothing(wall_s, samples):
    busy = _waiter("MainThread", wall=wall_s, held=wall_s * 0.5, native=wall_s * 0.5)
    verdict = verdict_for_profile(_evidence_profile(busy, wall=wall_s, samples=samples), TWO_CORES)
    assert (verdict.kind, verdict.recommended_backend, verdict.expected_speedup) == (
        "too-short",
        "inline",
        1.0,
    )
    assert "Too short to judge" in verdict.reason
    assert f"({samples} samples)" in verdict.reason


def test_little_activity_in_a_long_enough_run_is_too_short():
    thread = _waiter("MainThread", wall=0.2, held=0.02, io=0.005)
    verdict = verdict_for_profile(_evidence_profile(thread, wall=0.2, samples=200), TWO_CORES)
    assert verdict.kind == "too-short"


def test_joining_main_thread_is_not_contention():
    """Two hashers (GIL released) while main worked 10% then joined: native-parallel."""
    main = _waiter("MainThread", held=0.1, join=0.9)
    hashers = [_waiter(f"hasher-{i}", held=0.05, native=0.85, lock=0.0) for i in range(2)]
    verdict = verdict_for_profile(_evidence_profile(main, *hashers, held_fraction=0.2), TWO_CORES)
    assert verdict.kind == "native-parallel"
    assert "0.90s joining" in verdict.reason


def test_idle_pool_threads_around_a_saturated_stage_name_the_stage():
    idle = [_waiter(f"worker-{i}", idle=1.0) for i in range(45)]
    stage = _waiter("crunch-stage", held=0.95, wait=0.02)
    functions = (FunctionStats("crunch", "/app/pipe.py", 12, 0.9, 0.02),)
    profile = _evidence_profile(stage, *idle, held_fraction=0.96, functions=functions)
    verdict = verdict_for_profile(profile, TWO_CORES)
    assert verdict.kind == "serial"
    assert "crunch-stage" in verdict.reason and "crunch (pipe.py:12)" in verdict.reason
    assert "saturated" in verdict.reason
    assert "45.00s idle" in verdict.reason
    assert verdict.expected_speedup == 1.0


def test_pool_parent_waiting_on_results_is_idle_and_points_to_subprocesses():
    # The parent's own start-up (imports, forking the pool) is a good part of a short run.
    main = _waiter("MainThread", held=0.25, result=0.75)
    handlers = [_waiter(f"Thread-{i}", idle=1.0) for i in range(3)]
    functions = (
        FunctionStats("Pool.map", "/usr/lib/python3.11/multiprocessing/pool.py", 367, 0.0, 0.0),
    )
    profile = _evidence_profile(main, *handlers, held_fraction=0.03, functions=functions)
    verdict = verdict_for_profile(profile, TWO_CORES)
    assert (verdict.kind, verdict.recommended_backend) == ("idle", "process")
    assert "0.75s waiting for results" in verdict.reason
    assert "--subprocesses" in verdict.reason


def _pool_program(*busy_children):
    main = _waiter("MainThread", held=0.03, result=0.95)
    handlers = [_waiter(f"Thread-{i}", idle=1.0) for i in range(3)]
    children = tuple(
        replace(
            _evidence_profile(
                _waiter("MainThread", held=held, idle=1.0 - held), held_fraction=held
            ),
            pid=100 + index,
            parent_pid=1,
        )
        for index, held in enumerate(busy_children)
    )
    return _evidence_profile(main, *handlers, held_fraction=0.03, pid=1, processes=children)


def test_work_already_parallel_on_processes():
    verdict = verdict_for_profile(_pool_program(0.92, 0.9), TWO_CORES)
    assert (verdict.kind, verdict.recommended_backend) == ("gil-bound", "process")
    assert verdict.expected_speedup < 1.25
    assert "Already parallel on processes" in verdict.reason
    assert "pid 100, pid 101" in verdict.reason
    assert "waited 0.95s" in verdict.reason and "not contention" in verdict.reason


def test_one_busy_child_process_promises_no_parallel_speedup():
    verdict = verdict_for_profile(_pool_program(0.95, 0.0), TWO_CORES)
    assert verdict.expected_speedup == 1.0
    assert "Only one process did the work" in verdict.reason


def test_a_problem_inside_a_child_process_wins_the_whole_program_verdict():
    program = _pool_program(0.9)
    spinners = [_waiter(f"spin-{i}", held=0.5, wait=0.5) for i in range(2)]
    child = replace(_evidence_profile(*spinners), pid=200)
    verdict = verdict_for_profile(replace(program, processes=(child,)), TWO_CORES)
    assert verdict.kind == "gil-bound"
    assert verdict.reason.startswith("In child process pid 200: GIL-bound")


def _lock_threads(count=4, hold_io=True):
    share = 1.0 / count
    work = {"io": share} if hold_io else {"held": share}
    return [_waiter(f"writer-{i}", lock=1.0 - share, **work) for i in range(count)]


def test_lock_held_across_io_from_the_lock_evidence():
    lock = LockStats(
        address=0x7F00,
        label="write_record (app.py:12)",
        waiters=("writer-0", "writer-1", "writer-2", "writer-3"),
        wait_s=3.0,
        longest_wait_s=0.08,
        waiting_functions=("write_record",),
        holder_states={"io_wait": 0.9, "gil_held": 0.05, "lock_wait": 3.0},
        held_across="io_wait in write_record (app.py:14)",
    )
    profile = _evidence_profile(*_lock_threads(), held_fraction=0.05, locks=(lock,))
    verdict = verdict_for_profile(profile, TWO_CORES)
    assert (verdict.kind, verdict.expected_speedup) == ("lock-held-across-io", 1.0)
    assert "lock write_record (app.py:12)" in verdict.reason
    assert "the lock is held across I/O in write_record (app.py:14)" in verdict.reason
    assert "Shrink the critical section" in verdict.reason
    assert "writer-0, writer-1, writer-2 and 1 more" in verdict.reason


def test_lock_held_across_io_without_lock_evidence():
    """Three threads sleeping inside `with LOCK:`: each sleeps 1/3, waits 2/3."""
    verdict = verdict_for_profile(
        _evidence_profile(*_lock_threads(3), held_fraction=0.01), TWO_CORES
    )
    assert verdict.kind == "lock-held-across-io"
    assert verdict.expected_speedup == 1.0


def test_lock_held_for_python_work_is_lock_contention():
    lock = LockStats(
        0x7F00,
        "update (app.py:7)",
        ("a", "b", "c"),
        2.0,
        0.05,
        holder_states={"gil_held": 1.0, "lock_wait": 2.0},
    )
    profile = _evidence_profile(*_lock_threads(3, hold_io=False), locks=(lock,))
    verdict = verdict_for_profile(profile, TWO_CORES)
    assert (verdict.kind, verdict.expected_speedup) == ("lock-contention", 1.0)
    assert "update (app.py:7)" in verdict.reason


def test_gil_waits_while_a_lock_has_waiters_do_not_outweigh_the_lock():
    """Three workers queue on a lock held for pure-Python work (the lock-contention
    calibration program on a busy machine): 0.4 s of lock waits, 0.22 s of GIL waits, 0.2 s
    of those while the lock had waiters (on the way to it and out of it). The lock, not the
    GIL, serialises them."""
    workers = [
        _waiter(f"worker-{i}", wall=0.32, held=0.11, wait=0.073, lock=0.133) for i in range(3)
    ]
    main = _waiter("MainThread", wall=0.33, held=0.004, join=0.32)
    lock = LockStats(
        0x7F00,
        "update_table (lock_contention.py:20)",
        tuple(t.name for t in workers),
        0.4,
        0.04,
        holder_states={"gil_held": 0.3, "gil_wait": 0.195, "join_wait": 0.3},
        held_across="gil_held in update_table (lock_contention.py:20)",
    )
    profile = _evidence_profile(main, *workers, wall=0.33, held_fraction=0.99, locks=(lock,))
    verdict = verdict_for_profile(profile, TWO_CORES)
    assert (verdict.kind, verdict.expected_speedup) == ("lock-contention", 1.0)
    # The same waits with the GIL waits outside the lock's contention: GIL-bound evidence.
    unrelated = replace(lock, holder_states={"gil_held": 0.3, "join_wait": 0.3})
    verdict = verdict_for_profile(replace(profile, locks=(unrelated,)), TWO_CORES)
    assert verdict.kind != "lock-contention"


def test_brief_lock_use_by_io_threads_is_not_contention():
    threads = [_waiter(f"fetch-{i}", held=0.04, io=0.9, lock=0.05) for i in range(8)]
    verdict = verdict_for_profile(_evidence_profile(*threads, held_fraction=0.3), TWO_CORES)
    assert verdict.kind == "io-bound"


def test_gil_bound_speedup_follows_amdahl_over_the_serial_part():
    """Main runs 0.1 s alone, then two spinners share the GIL for 1 s while it joins."""
    main = _waiter("MainThread", wall=1.1, held=0.1, join=1.0)
    spinners = [_waiter(f"spin-{i}", held=0.5, wait=0.5) for i in range(2)]
    verdict = verdict_for_profile(_evidence_profile(main, *spinners, wall=1.1), TWO_CORES)
    assert verdict.kind == "gil-bound"
    bound = 1.1 / (0.1 + 1.0 / 2)  # serial part + the parallel part on 2 cores
    assert 1.5 < verdict.expected_speedup < bound
    assert "1.00s of the 1.10s run could run in parallel" in verdict.reason


@pytest.mark.parametrize("count", [2, 4, 8])
def test_gil_bound_speedup_never_exceeds_the_cores(count):
    spinners = [_waiter(f"spin-{i}", held=1 / count, wait=1 - 1 / count) for i in range(count)]
    verdict = verdict_for_profile(_evidence_profile(*spinners), TWO_CORES)
    assert verdict.kind == "gil-bound"
    assert 1.0 < verdict.expected_speedup <= 2.0


@pytest.mark.parametrize(
    ("wall_s", "parallel_s", "streams", "cores", "expected"),
    [
        (1.0, 1.0, 2, 2, 1.9),
        (1.0, 0.0, 2, 2, 1.0),
        (1.0, 1.0, 1, 8, 1.0),
        (1.0, 0.5, 8, 8, 1.77),
        (1.0, 1.0, 16, 4, 3.8),
    ],
)
def test_amdahl_speedup(wall_s, parallel_s, streams, cores, expected):
    assert amdahl_speedup(wall_s, parallel_s, streams, cores) == pytest.approx(expected, abs=0.01)


def _loop_profile(blocked_s, select_s, state="io_wait"):
    handler = Frame("handle_request", "/app/serve.py", 12)
    stacks = (
        StackStats(1, state, (*LOOP_ROOT, HANDLE, STEP, handler), blocked_s),
        StackStats(1, "io_wait", (*LOOP_ROOT, SELECT), select_s),
    )
    main = ThreadStats(
        "MainThread",
        1,
        1.0,
        0.05,
        0.02 if state == "io_wait" else blocked_s,
        0.0,
        0.0,
        blocked_s + select_s if state == "io_wait" else select_s,
        0.0,
        idle_s=0.0,
        join_wait_s=0.0,
        result_wait_s=0.0,
    )
    return _evidence_profile(main, held_fraction=0.05, stacks=stacks)


@pytest.mark.parametrize("state", ["io_wait", "gil_held"])
def test_blocked_event_loop_names_the_coroutine(state):
    verdict = verdict_for_profile(_loop_profile(0.8, 0.15, state), TWO_CORES)
    assert (verdict.kind, verdict.recommended_backend) == ("loop-blocked", "asyncio")
    assert "handle_request (serve.py:12)" in verdict.reason
    assert "asyncio.to_thread" in verdict.reason and "run_in_executor" in verdict.reason


def test_event_loop_waiting_in_its_selector_is_not_blocked():
    verdict = verdict_for_profile(_loop_profile(0.02, 0.93), TWO_CORES)
    assert verdict.kind == "io-bound"


def _io_profile(waits, wait_s, threads=1):
    wall = waits * wait_s / threads + 0.01
    timeline = tuple(
        StateSpan(t, "io_wait", i * wait_s, (i + 1) * wait_s - 0.0001)
        for t in range(threads)
        for i in range(waits // threads)
    )
    stats = [
        _waiter(f"t{t}", wall=wall, held=0.002 * waits / threads, io=wall - 0.01)
        for t in range(threads)
    ]
    stats = [replace(s, native_id=t) for t, s in enumerate(stats)]
    return _evidence_profile(*stats, wall=wall, held_fraction=0.02, timeline=timeline)


def test_one_long_wait_is_io_but_nothing_to_overlap():
    verdict = verdict_for_profile(_io_profile(1, 1.0), TWO_CORES)
    assert (verdict.kind, verdict.expected_speedup) == ("io-bound", 1.0)
    assert "1 separate waits" in verdict.reason
    assert "more threads cannot help" in verdict.reason


def test_many_waits_in_a_row_overlap():
    verdict = verdict_for_profile(_io_profile(40, 0.05), TWO_CORES)
    assert verdict.kind == "io-bound"
    # 40 waits of 50 ms with 2 ms of CPU each: at best the CPU and one wait remain.
    assert 10 < verdict.expected_speedup <= 2.01 / 0.08


def test_lock_holder_waking_for_a_core_on_a_busy_machine_still_counts_as_io():
    """The holder's "native" time here is a wake-up from fsync queued for a core: its CPU
    clock says it hardly ran, so the lock is held across I/O."""
    threads = [replace(t, cpu_s=0.004) for t in _lock_threads(4)]
    lock = LockStats(
        0x7F00,
        "write_record (app.py:12)",
        tuple(t.name for t in threads),
        3.0,
        0.05,
        holder_states={"io_wait": 0.3, "native": 0.5, "gil_held": 0.01, "lock_wait": 3.0},
    )
    profile = _evidence_profile(*threads, held_fraction=0.02, locks=(lock,))
    assert verdict_for_profile(profile, TWO_CORES).kind == "lock-held-across-io"
    ran = [replace(t, cpu_s=0.2) for t in threads]
    profile = replace(profile, threads=tuple(ran))
    assert verdict_for_profile(profile, TWO_CORES).kind == "lock-contention"


def test_io_against_cpu_really_used_on_a_busy_machine():
    """Downloads on a loaded machine: native time is mostly waiting for a core."""
    main = replace(
        _waiter("MainThread", held=0.17, native=0.30, io=0.53), cpu_s=0.12, cpu_wait_s=0.35
    )
    verdict = verdict_for_profile(_evidence_profile(main, held_fraction=0.17), TWO_CORES)
    assert verdict.kind == "io-bound"


def test_a_thread_without_stack_evidence_among_told_ones_is_judged_by_its_work():
    """One idle pool worker whose stack was never read keeps its wait in lock_wait_s."""
    stage = _waiter("crunch-stage", held=0.95)
    told = [_waiter(f"worker-{i}", idle=1.0) for i in range(10)]
    unread = _thread("worker-10", lock=0.9)
    profile = _evidence_profile(stage, *told, unread, held_fraction=0.95)
    assert verdict_for_profile(profile, TWO_CORES).kind == "serial"


def test_lock_waits_weigh_against_cpu_really_used_on_a_busy_machine():
    """Workers queueing on a lock on an oversubscribed machine: most of their "native" time
    is waiting for a core after a wake-up, not work."""
    threads = [
        replace(_waiter(f"w{i}", held=0.25, native=0.45, lock=0.3), cpu_wait_s=0.42)
        for i in range(3)
    ]
    verdict = verdict_for_profile(_evidence_profile(*threads, held_fraction=0.75), TWO_CORES)
    assert verdict.kind == "lock-contention"


def test_a_lock_held_across_native_work_on_a_busy_machine_is_not_io():
    """No I/O at all: a holder queued for a core is a busy machine, not a lock across I/O."""
    threads = [replace(t, cpu_s=0.03) for t in _lock_threads(3, hold_io=False)]
    lock = LockStats(
        0x7F00,
        "digest (app.py:3)",
        tuple(t.name for t in threads),
        2.0,
        0.05,
        holder_states={"native": 0.5, "gil_held": 0.01, "lock_wait": 2.0},
    )
    profile = _evidence_profile(*threads, held_fraction=0.02, locks=(lock,))
    assert verdict_for_profile(profile, TWO_CORES).kind == "lock-contention"


def test_a_light_thread_waiting_on_a_saturated_stage_does_not_make_it_gil_bound():
    """A producer with little Python of its own waits for the GIL the stage holds."""
    stage = _waiter("crunch-stage", held=0.9, wait=0.05)
    producer = _waiter("MainThread", held=0.06, wait=0.3, idle=0.6)
    verdict = verdict_for_profile(_evidence_profile(stage, producer), TWO_CORES)
    assert verdict.kind == "serial"
    assert "crunch-stage" in verdict.reason and "waited 0.30s for the GIL" in verdict.reason


def test_a_whole_program_starved_of_cpu_says_so():
    program = _pool_program(0.92, 0.9)
    starved = tuple(
        replace(child, threads=tuple(replace(t, cpu_wait_s=0.8) for t in child.threads))
        for child in program.processes
    )
    verdict = verdict_for_profile(replace(program, processes=starved), TWO_CORES)
    assert "Threads also waited 1.60s for a CPU" in verdict.reason


def test_idle_threads_beside_sleeping_ones_do_not_make_the_run_idle():
    sleepers = [_waiter(f"worker-{i}", io=0.98) for i in range(2)]
    idle = [_waiter(f"service-{i}", idle=1.0) for i in range(4)]
    main = _waiter("MainThread", join=0.98)
    verdict = verdict_for_profile(
        _evidence_profile(main, *sleepers, *idle, held_fraction=0.0), TWO_CORES
    )
    assert verdict.kind == "io-bound"


def test_lock_waits_no_stack_tied_to_a_lock_by_threads_that_did_nothing_else_are_not_contention():
    """Pool workers that only waited (no CPU, no I/O), whose lock waits no stack tied to a
    contended lock (Profile.locks empty), beside one saturated stage: not lock contention
    (seen in the idle-pool calibration program when pool threads woke at shutdown)."""
    pool = [_waiter(f"pool-{i}", lock=0.3, idle=0.7) for i in range(2)]
    stage = _waiter("crunch-stage", held=0.95)
    verdict = verdict_for_profile(_evidence_profile(stage, *pool, held_fraction=0.95), TWO_CORES)
    assert verdict.kind != "lock-contention"
    # The same waits tied to a named lock are contention again.
    lock = LockStats(0x7F00, "get (queue.py:1)", ("pool-0", "pool-1"), 0.6, 0.3)
    named = _evidence_profile(stage, *pool, held_fraction=0.95, locks=(lock,))
    assert verdict_for_profile(named, TWO_CORES).kind == "lock-contention"
