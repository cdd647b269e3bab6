"""The probe's numbers against workloads whose answer is known by construction.

Targets (the "Measure" spec): held_fraction within 0.05 of the truth, each thread's
gil_wait within 0.07 of the truth, the right verdict kind. Truths come from the workloads
themselves (a spinner holds the GIL all the time; a duty-cycled spinner reports its real
duty; a spinner's GIL wait is the kernel's account of how long it slept), never from
timing assumptions about this machine.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time

import pytest

import gilwise
import workloads
from gilwise._model import Profile

pytestmark = [pytest.mark.multiversion, pytest.mark.usefixtures("no_leaks")]

SECONDS = 0.7
HELD_MARGIN = 0.05
WAIT_MARGIN = 0.07
# Issue 11's target for per-thread GIL wait of 2-4 spinners.
HANDOFF_MARGIN = 0.03


def _profile(fn, *args) -> tuple[object, Profile]:
    with gilwise.monitor() as mon:
        result = fn(*args)
    return result, mon.profile


def _workers(profile: Profile) -> list:
    return [t for t in profile.threads if t.name.startswith("worker-")]


def test_one_spinner_holds_the_gil_all_the_time():
    _, profile = _profile(workloads.spinner, SECONDS)
    assert profile.held_fraction == pytest.approx(1.0, abs=HELD_MARGIN)
    main = profile.thread(threading.get_native_id())
    assert main.gil_wait_s == pytest.approx(0.0, abs=WAIT_MARGIN * main.wall_s)
    assert profile.verdict is not None and profile.verdict.kind == "serial"


def test_two_spinners_hold_the_gil_all_the_time_and_each_waits_for_it():
    _, profile = _profile(workloads.run_threads, workloads.measured_spinner, 2, SECONDS)
    assert profile.held_fraction == pytest.approx(1.0, abs=HELD_MARGIN)
    # Each one's GIL wait: see test_spinners_gil_wait_includes_the_handoffs_...
    assert profile.verdict is not None and profile.verdict.kind == "gil-bound"
    assert profile.verdict.recommended_backend == "process"


@pytest.mark.parametrize("threads", [2, 4])
def test_spinners_gil_wait_includes_the_handoffs_and_nothing_reads_native(threads):
    # A pure-Python spinner not holding the GIL is waiting for it, hand-offs included (woken,
    # not yet the holder; made to drop it, not yet waiting again): its GIL wait lies between
    # the kernel's sleep (every sleep is a wait for the GIL) and all its time off a CPU
    # (the kernel cannot say which run-queue waits were inside take_gil). On an idle machine
    # the two agree. It does no native work at all.
    # Probe and kernel are compared over the same window, the spinning itself: a thread's
    # life also holds its start (the barrier, the GIL to begin) and its end (the GIL to
    # finish, long on a busy machine where the holder is off a CPU), outside the kernel's
    # figures. On a VM the kernel's sleep also holds the time the hypervisor took from the
    # running thread (steal: ~5% on the 2-core VM this was built on), which is not a wait.
    reports, profile = _profile(workloads.run_threads, workloads.measured_spinner, threads, SECONDS)
    for report in reports:
        states = _states_between(profile, report.native_id, report.start_s, report.wall_s)
        share = states["gil_wait"] / report.wall_s
        slept = report.sleep_s / report.wall_s - report.steal_share
        off_cpu = 1.0 - report.window_cpu_s / report.wall_s
        assert slept - HANDOFF_MARGIN <= share <= off_cpu + HANDOFF_MARGIN, dict(states)
        assert states["native"] / report.wall_s <= HANDOFF_MARGIN, dict(states)
        held_or_waiting = states["gil_held"] + states["gil_wait"]
        assert held_or_waiting / report.wall_s >= 1.0 - HANDOFF_MARGIN, dict(states)


def _states_between(
    profile: Profile, native_id: int, start_s: float, seconds: float
) -> dict[str, float]:
    """Seconds per state of one thread's timeline from ``start_s`` (time.monotonic(), the
    same clock as the sampler's) for ``seconds``."""
    from collections import defaultdict

    from gilwise.probe._build import MAX_TIMELINE_SPANS

    assert len(profile.timeline) < MAX_TIMELINE_SPANS  # whole, not resampled
    begin = start_s - profile.extra["start_monotonic_s"]
    end = begin + seconds
    states: dict[str, float] = defaultdict(float)
    for span in profile.timeline:
        if span.native_id == native_id:
            overlap = min(span.end_s, end) - max(span.start_s, begin)
            if overlap > 0:
                states[span.state] += overlap
    assert sum(states.values()) == pytest.approx(seconds, abs=0.01)  # the window was sampled
    return states


def spin_after_sleeping(sleep_s: float, spin_s: float) -> None:
    time.sleep(sleep_s)
    workloads.spinner(spin_s)


def test_a_thread_waking_from_a_long_sleep_is_seen_at_once():
    # The sampler reads a long-blocked ("quiet") thread less often; its wake-up must still
    # be caught within a few samples, and its stack read again.
    _, profile = _profile(workloads.run_threads, spin_after_sleeping, 1, 0.4, 0.4)
    (worker,) = _workers(profile)
    assert worker.io_wait_s == pytest.approx(0.4, abs=0.02)
    assert worker.gil_held_s == pytest.approx(0.4, abs=0.02)
    spinner = next(f for f in profile.functions if f.function == "spinner")
    assert spinner.gil_held_s == pytest.approx(0.4, abs=0.02)


def bursts_between_sleeps(rounds: int) -> float:
    """Sleep 60 ms, then hash for ~3 ms (GIL released), ``rounds`` times; returns the
    seconds spent in the bursts."""
    busy = 0.0
    for _ in range(rounds):
        time.sleep(0.06)
        start = time.monotonic()
        while time.monotonic() - start < 0.003:
            hashlib.sha256(BURST_BUFFER).digest()
        busy += time.monotonic() - start
    return busy


BURST_BUFFER = b"x" * (1 << 16)


def test_short_native_bursts_between_long_sleeps_are_all_seen():
    # A thread that mostly sleeps must still be read every sample (few threads): bursts of
    # a few ms after each long sleep add up to its working time.
    (busy,), profile = _profile(workloads.run_threads, bursts_between_sleeps, 1, 12)
    (worker,) = _workers(profile)
    # After each sleep the thread is runnable before it runs again: on a busy machine it
    # waits for a CPU there, which the kernel (and so the profile) counts as running, not
    # sleeping; the thread's own clock starts only when it runs. The kernel's figure of
    # that wait (cpu_wait_s, also spent inside the bursts) bounds the difference.
    working = worker.native_s + worker.gil_held_s
    assert busy - 0.012 <= working <= busy + (worker.cpu_wait_s or 0.0) + 0.012
    assert profile.extra["quiet_subsampled"] is False


def test_cpu_time_of_threads_that_end_before_the_monitor_stops():
    reports, profile = _profile(workloads.run_threads, workloads.measured_spinner, 2, SECONDS)
    for report in reports:
        # The sampler reads CPU clocks every 10 ms: at most that much of the end is missed.
        assert profile.thread(report.native_id).cpu_s == pytest.approx(report.cpu_s, abs=0.02)


def test_threads_waiting_for_a_cpu_are_reported_with_the_kernels_figure():
    # Twice as many native (GIL-releasing) threads as cores: each waits for a CPU about half
    # of the time. The truth is each thread's own schedstat when it finishes; then it parks
    # (no CPU, no run queue) until the monitor has stopped, so the monitor's last reading
    # of its clocks comes after the truth was taken, whatever the load.
    threads = 2 * (os.cpu_count() or 1)
    start = threading.Barrier(threads)
    measured = threading.Barrier(threads + 1)
    release = threading.Event()
    truths: list[tuple[int, float, float]] = []

    def measure() -> None:
        start.wait(workloads.JOIN_TIMEOUT_S)
        truths.append(workloads.measured_hasher(SECONDS))
        measured.wait(workloads.JOIN_TIMEOUT_S)
        release.wait(workloads.JOIN_TIMEOUT_S)

    workers = [threading.Thread(target=measure) for _ in range(threads)]
    try:
        with gilwise.monitor() as mon:
            for worker in workers:
                worker.start()
            measured.wait(workloads.JOIN_TIMEOUT_S)
    finally:
        release.set()
        for worker in workers:
            worker.join(workloads.JOIN_TIMEOUT_S)
    assert len(truths) == threads
    waited = 0.0
    for native_id, on_cpu_s, runqueue_s in truths:
        stats = mon.profile.thread(native_id)
        assert stats.cpu_s == pytest.approx(on_cpu_s, abs=0.03)
        assert stats.cpu_wait_s == pytest.approx(runqueue_s, abs=0.03)
        waited += runqueue_s
    assert waited > 0.25 * threads * SECONDS  # the machine really was oversubscribed


@pytest.mark.parametrize("duty", [0.3, 0.7])
def test_duty_cycled_spinner_holds_the_gil_for_its_duty(duty):
    (real_duty,), profile = _profile(
        workloads.run_threads, workloads.duty_spinner, 1, SECONDS, duty
    )
    assert profile.held_fraction == pytest.approx(real_duty, abs=HELD_MARGIN)


@pytest.mark.parametrize("workload", [workloads.hasher, workloads.compressor])
def test_native_threads_barely_hold_the_gil(workload):
    _, profile = _profile(workloads.run_threads, workload, 2, SECONDS)
    assert profile.held_fraction == pytest.approx(0.0, abs=HELD_MARGIN)
    # Each worker hashes for SECONDS (its observed wall also covers start-up, the barrier
    # and exit, which a loaded machine stretches).
    for stats in _workers(profile):
        assert stats.native_s >= (1.0 - 2 * HELD_MARGIN) * SECONDS
    assert profile.verdict is not None and profile.verdict.kind == "native-parallel"


def test_sleeping_threads_are_io_bound_and_hold_nothing():
    _, profile = _profile(workloads.run_threads, workloads.sleeper, 2, SECONDS)
    assert profile.held_fraction == pytest.approx(0.0, abs=HELD_MARGIN)
    for stats in _workers(profile):
        assert stats.io_wait_s >= (1.0 - HELD_MARGIN) * SECONDS
    assert profile.verdict is not None and profile.verdict.kind == "io-bound"


def test_socket_recv_is_io_wait():
    _, profile = _profile(workloads.socket_waiter, SECONDS)
    main = profile.thread(threading.get_native_id())
    assert main.io_wait_s >= (1.0 - HELD_MARGIN) * SECONDS
    assert profile.held_fraction == pytest.approx(0.0, abs=HELD_MARGIN)
    assert profile.verdict is not None and profile.verdict.kind == "io-bound"


def test_threads_queueing_on_one_lock_are_lock_contention():
    _, profile = _profile(workloads.lock_queue, 3, SECONDS)
    workers = _workers(profile)
    assert len(workers) == 3
    # One of three holds the lock at a time: each waits on it most of the rest.
    for stats in workers:
        assert stats.lock_wait_s > stats.gil_wait_s
    assert profile.verdict is not None and profile.verdict.kind == "lock-contention"


def test_waiting_on_an_event_is_idle():
    _, profile = _profile(workloads.event_waiter, SECONDS)
    assert profile.held_fraction == pytest.approx(0.0, abs=HELD_MARGIN)
    assert profile.verdict is not None and profile.verdict.kind == "idle"


def test_functions_are_attributed_to_the_innermost_python_frame():
    _, profile = _profile(workloads.run_threads, workloads.spinner, 2, SECONDS)
    top = profile.functions[0]
    assert top.function == "spinner"
    assert top.file.endswith("workloads.py")
    # Two spinners: held and waiting time both go to the spinner. Not all of it: until the
    # first stack snapshot after a thread starts, its time goes to the frame it started in.
    assert top.gil_held_s > 0.5 * SECONDS
    assert top.gil_wait_s > 0.25 * SECONDS
