"""verdict.py on synthetic profiles and task measurements whose right answer is known."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gilwise.model import Profile, PythonInfo, ThreadStats
from gilwise.runtime import RuntimeFacts
from gilwise.verdict import TaskMeasurement, decide_for_task, verdict_for_profile

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
    threads = [replace(_thread(f"hasher-{i}", native=0.5), cpu_wait_s=0.5) for i in range(4)]
    starved = verdict_for_profile(_profile(*threads, held_fraction=0.0), TWO_CORES)
    assert starved.kind == "native-parallel"
    assert "Threads also waited 2.00s for a CPU" in starved.reason
    assert "more runnable threads than its 2 cores" in starved.reason
    fed = [replace(t, cpu_wait_s=0.01) for t in threads]
    assert (
        "for a CPU" not in verdict_for_profile(_profile(*fed, held_fraction=0.0), TWO_CORES).reason
    )
