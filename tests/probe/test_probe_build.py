"""Samples -> Profile on fake probe results (no /proc, no clocks): every number is known."""

from __future__ import annotations

import pytest

from gilwise._model import Frame, StateSpan
from gilwise._runtime import RuntimeFacts
from gilwise.probe._build import (
    attribute_functions,
    build_profile,
    cap_timeline,
    held_seconds,
    split_by_stacks,
)
from gilwise.probe._procfs import FUTEX, GIL_HELD, GIL_WAIT, IO_WAIT, LOCK_WAIT, NATIVE, RUNNING
from gilwise.probe._stacks import FrameSeries

TWO_CORES = RuntimeFacts((3, 11, 7), "CPython", 2, True, False, "linux")
FREE_THREADED = RuntimeFacts((3, 13, 0), "CPython", 2, False, True, "linux")


def _series(times, states, *, first=0.0, last=None):
    return {
        "first_s": first,
        "last_s": last if last is not None else times[-1],
        "seen_at_start": True,
        "name": "",
        "times": times,
        "states": states,
        "cpu_first_ns": 0,
        "cpu_last_ns": 500_000_000,
        "ended": False,
    }


def _result(threads, holder_times, holder_tids, *, gil_known=True, gil_enabled=True):
    return {
        "pid": 1,
        "start_s": 0.0,
        "stop_s": 1.0,
        "interval_s": 0.001,
        "samples": 1000,
        "gil_known": gil_known,
        "gil_enabled": gil_enabled,
        "holder_times": holder_times,
        "holder_tids": holder_tids,
        "threads": threads,
    }


def _two_spinners():
    # Thread 11 holds the GIL in [0, 0.5), thread 12 in [0.5, 1.0); each waits otherwise.
    threads = {
        11: _series([0.0, 0.5], [GIL_HELD, GIL_WAIT]),
        12: _series([0.0, 0.5], [GIL_WAIT, GIL_HELD]),
    }
    return _result(threads, [0.0, 0.5], [11, 12])


def test_two_spinners_build_a_gil_bound_profile():
    profile = build_profile(_two_spinners(), TWO_CORES)
    assert profile.held_fraction == pytest.approx(1.0)
    for stats in profile.threads:
        assert stats.gil_held_s == pytest.approx(0.5)
        assert stats.gil_wait_s == pytest.approx(0.5)
        assert stats.cpu_s == pytest.approx(0.5)
    assert profile.verdict is not None and profile.verdict.kind == "gil-bound"
    assert len(profile.timeline) == 4


def test_the_stack_samplers_gil_time_and_handoffs_leave_the_held_fraction():
    # Program holds [0, 0.4), free [0.4, 0.401), sampler holds [0.401, 0.5), program again.
    result = _result(
        {11: _series([0.0], [GIL_HELD]), 99: _series([0.0], [IO_WAIT])},
        [0.0, 0.4, 0.401, 0.5],
        [11, 0, 99, 11],
    )
    held, probe = held_seconds(result, {99}, handoff_s=0.0025)
    assert held == pytest.approx(0.9)
    assert probe == pytest.approx(0.1)
    profile = build_profile(result, TWO_CORES, excluded={99})
    assert profile.held_fraction == pytest.approx(1.0)
    assert [t.native_id for t in profile.threads] == [11]


def test_a_free_threaded_run_has_no_held_fraction_and_says_why():
    threads = {11: _series([0.0], [NATIVE]), 12: _series([0.0], [NATIVE])}
    result = _result(threads, [0.0], [0], gil_known=False, gil_enabled=False)
    profile = build_profile(result, FREE_THREADED)
    assert profile.held_fraction is None
    assert profile.python.gil_enabled is False
    assert all(t.gil_held_s is None and t.native_s == pytest.approx(1.0) for t in profile.threads)
    assert any("GIL is disabled" in note for note in profile.unavailable)
    assert profile.verdict is not None and profile.verdict.recommended_backend == "thread"


def test_an_unknown_gil_address_reports_none_not_zero():
    threads = {11: _series([0.0, 0.6], [RUNNING, FUTEX])}
    result = _result(threads, [0.0], [0], gil_known=False)
    profile = build_profile(result, TWO_CORES, source="attach")
    stats = profile.threads[0]
    assert profile.held_fraction is None
    assert (stats.gil_held_s, stats.gil_wait_s, stats.native_s, stats.lock_wait_s) == (None,) * 4
    assert profile.extra["thread_states"]["11"] == pytest.approx(
        {"running_s": 0.6, "futex_wait_s": 0.4}
    )
    assert {span.state for span in profile.timeline} == {"unknown"}


F = ("f", "/app/a.py", 1)
G = ("g", "/app/a.py", 9)
MAIN = ("<module>", "/app/a.py", 1)
JOIN = ("Thread.join", "/usr/lib/python3.11/threading.py", 1100)
TSTATE_LOCK = ("Thread._wait_for_tstate_lock", "/usr/lib/python3.11/threading.py", 1140)
COND_WAIT = ("Condition.wait", "/usr/lib/python3.11/threading.py", 320)
RESULT = ("Future.result", "/usr/lib/python3.11/concurrent/futures/_base.py", 428)
BOOT = (
    ("Thread._bootstrap", "/usr/lib/python3.11/threading.py", 990),
    ("Thread._bootstrap_inner", "/usr/lib/python3.11/threading.py", 1030),
    ("Thread.run", "/usr/lib/python3.11/threading.py", 970),
)
POOL_WORKER = ("_worker", "/usr/lib/python3.11/concurrent/futures/thread.py", 69)


def test_functions_split_state_spans_at_frame_snapshots():
    frames = FrameSeries([0.0, 0.25], [(MAIN, F), (MAIN, G)])
    spans = [(0.0, 0.5, GIL_HELD, 0), (0.5, 1.0, GIL_WAIT, 0)]
    out = attribute_functions(split_by_stacks(spans, frames))
    assert out[F][GIL_HELD] == pytest.approx(0.25)
    assert out[G][GIL_HELD] == pytest.approx(0.25)
    assert out[G][GIL_WAIT] == pytest.approx(0.5)


def test_a_blocked_span_takes_the_stack_read_inside_it_for_its_head():
    # Running in f until 0.5, then blocked; the blocked stack (in g) is read at 0.6: the
    # thread ran no Python after 0.5, so [0.5, 0.6) was g's too.
    frames = FrameSeries([0.0, 0.6], [(MAIN, F), (MAIN, G)])
    spans = [(0.0, 0.5, GIL_HELD, 0), (0.5, 1.0, IO_WAIT, 0)]
    out = attribute_functions(split_by_stacks(spans, frames))
    assert out[F] == {GIL_HELD: pytest.approx(0.5)}
    assert out[G] == {IO_WAIT: pytest.approx(0.5)}


def test_a_stack_read_at_the_sample_that_began_a_blocked_span_is_its_head():
    # The sample at 0.5 read the state (blocked) and then the stack (in f): that read is
    # inside the span. The thread woke briefly at 0.7 between two state samples, called g
    # and blocked again, so one blocked run holds two waits: f's until 0.7, then g's.
    frames = FrameSeries([0.0, 0.5, 0.7], [(MAIN,), (MAIN, F), (MAIN, G)])
    spans = [(0.0, 0.5, GIL_HELD, 0), (0.5, 1.0, IO_WAIT, 0)]
    out = attribute_functions(split_by_stacks(spans, frames))
    assert out[F] == {IO_WAIT: pytest.approx(0.2)}
    assert out[G] == {IO_WAIT: pytest.approx(0.3)}


def _stacked(threads, frames, holders=([0.0], [0])):
    return build_profile(_result(threads, *holders), TWO_CORES, frames=frames)


def test_stacks_are_folded_per_thread_and_state_root_first():
    threads = {11: _series([0.0, 0.5], [GIL_HELD, GIL_WAIT])}
    frames = {11: FrameSeries([0.0, 0.2, 0.4], [(MAIN, F), (MAIN, G), (MAIN, F)])}
    profile = _stacked(threads, frames, ([0.0, 0.5], [11, 0]))
    by_key = {(s.state, tuple(f.function for f in s.frames)): s for s in profile.stacks}
    assert set(by_key) == {
        ("gil_held", ("<module>", "f")),
        ("gil_held", ("<module>", "g")),
        ("gil_wait", ("<module>", "f")),
    }
    assert by_key[("gil_held", ("<module>", "f"))].seconds == pytest.approx(0.3)
    assert by_key[("gil_held", ("<module>", "f"))].samples == 300
    assert by_key[("gil_held", ("<module>", "g"))].seconds == pytest.approx(0.2)
    assert by_key[("gil_wait", ("<module>", "f"))].seconds == pytest.approx(0.5)
    assert profile.stacks[0].frames[0] == Frame("<module>", "/app/a.py", 1)


def test_blocked_time_gets_its_reason_from_the_stack():
    # One thread joins, one waits for a future's result, one is an idle pool worker, one
    # acquires a lock in user code: only the last is lock_wait.
    threads = {tid: _series([0.0], [LOCK_WAIT]) for tid in (11, 12, 13, 14)}
    frames = {
        11: FrameSeries([0.0], [(MAIN, JOIN, TSTATE_LOCK)]),
        12: FrameSeries([0.0], [(MAIN, RESULT, COND_WAIT)]),
        13: FrameSeries([0.0], [(*BOOT, POOL_WORKER)]),
        14: FrameSeries([0.0], [(*BOOT, F)]),
    }
    profile = _stacked(threads, frames)
    by_id = {t.native_id: t for t in profile.threads}
    assert by_id[11].join_wait_s == pytest.approx(1.0) and by_id[11].lock_wait_s == 0.0
    assert by_id[12].result_wait_s == pytest.approx(1.0) and by_id[12].lock_wait_s == 0.0
    assert by_id[13].idle_s == pytest.approx(1.0) and by_id[13].lock_wait_s == 0.0
    assert by_id[14].lock_wait_s == pytest.approx(1.0)
    assert (by_id[14].idle_s, by_id[14].join_wait_s, by_id[14].result_wait_s) == (0.0,) * 3
    assert {span.state for span in profile.timeline} == {
        "join_wait",
        "result_wait",
        "idle",
        "lock_wait",
    }


def test_a_pool_worker_waiting_for_a_task_is_idle_and_one_running_a_c_task_is_not():
    # multiprocessing.pool.worker gets tasks through a C call (ThreadPool's SimpleQueue) and
    # calls the task: innermost on a futex it waits for work; in I/O the task (time.sleep).
    worker = ("worker", "/usr/lib/python3.11/multiprocessing/pool.py", 114)
    threads = {11: _series([0.0], [LOCK_WAIT]), 12: _series([0.0], [IO_WAIT])}
    frames = {tid: FrameSeries([0.0], [(*BOOT, worker)]) for tid in (11, 12)}
    by_id = {t.native_id: t for t in _stacked(threads, frames).threads}
    assert by_id[11].idle_s == pytest.approx(1.0)
    assert by_id[12].io_wait_s == pytest.approx(1.0) and by_id[12].idle_s == 0.0


def test_lock_waits_without_a_stack_make_no_lock():
    # A thread whose stack was never read: its futex wait may be a Condition.wait.
    threads = {
        11: {**_series([0.0], [LOCK_WAIT]), "locks": [0xA]},
        12: {**_series([0.0], [LOCK_WAIT]), "locks": [0xA]},
    }
    profile = _stacked(threads, {11: FrameSeries([0.0], [(*BOOT, F)])})
    (lock,) = profile.locks
    assert lock.waiters == ("thread-11",) and lock.wait_s == pytest.approx(1.0)
    assert profile.thread(12).lock_wait_s == pytest.approx(1.0)


def test_threads_without_stacks_have_no_wait_reasons():
    profile = build_profile(_result({11: _series([0.0], [LOCK_WAIT])}, [0.0], [0]), TWO_CORES)
    stats = profile.threads[0]
    assert (stats.idle_s, stats.join_wait_s, stats.result_wait_s) == (None,) * 3
    assert stats.lock_wait_s == pytest.approx(1.0)
    assert profile.stacks == () and profile.locks == ()


def test_waits_on_one_lock_are_one_lock_with_its_holder():
    # 11 holds the lock while sleeping in h; 12 waits on it [0.2, 1.0), 13 [0.5, 1.0); a
    # lock 0xB waited on for less than the threshold is not listed.
    H = ("h", "/app/a.py", 30)
    threads = {
        11: _series([0.0], [IO_WAIT]),
        12: {**_series([0.0, 0.2], [GIL_HELD, LOCK_WAIT]), "locks": [0, 0xA]},
        13: {**_series([0.0, 0.5, 0.505], [IO_WAIT, LOCK_WAIT, IO_WAIT]), "locks": [0, 0xB, 0]},
    }
    threads[13] = {
        **_series([0.0, 0.5, 0.505, 0.6], [IO_WAIT, LOCK_WAIT, IO_WAIT, LOCK_WAIT]),
        "locks": [0, 0xB, 0, 0xA],
    }
    frames = {
        11: FrameSeries([0.0], [(*BOOT, H)]),
        12: FrameSeries([0.0], [(*BOOT, F)]),
        13: FrameSeries([0.0], [(*BOOT, G)]),
    }
    profile = _stacked(threads, frames, ([0.0, 0.2], [12, 0]))
    (lock,) = profile.locks
    assert lock.address == 0xA
    assert lock.waiters == ("thread-12", "thread-13")
    assert lock.wait_s == pytest.approx(0.8 + 0.4)
    assert lock.longest_wait_s == pytest.approx(0.8)
    assert lock.waiting_functions == ("f (a.py:1)", "g (a.py:9)")
    assert lock.label == "f (a.py:1)"
    # Meanwhile 11 slept, and 13 slept or waited on the other lock until it queued too.
    assert lock.holder_states == pytest.approx({"io_wait": 0.8 + 0.3 + 0.095, "lock_wait": 0.005})
    # Until 0.6, 11 and 13 could each hold it (neither had waited for it): not told; then
    # only 11 could.
    assert lock.held_across == "io_wait in h (a.py:30)"


def test_a_holder_split_between_io_and_native_in_one_function_is_named():
    # 11 holds the lock in h: by turns waiting for the disk (0.45 s), flushing on its own CPU
    # or waiting for one (native, 0.4 s) and running Python (0.15 s); 12 waits all along.
    # No state reaches half of the time, the function does: "io_wait in h", its top state.
    H = ("h", "/app/a.py", 30)
    threads = {
        11: _series([0.0, 0.45, 0.85], [IO_WAIT, NATIVE, GIL_HELD]),
        12: {**_series([0.0], [LOCK_WAIT]), "locks": [0xA]},
    }
    frames = {11: FrameSeries([0.0], [(*BOOT, H)]), 12: FrameSeries([0.0], [(*BOOT, F)])}
    profile = _stacked(threads, frames, ([0.0, 0.85], [0, 11]))
    (lock,) = profile.locks
    assert lock.held_across == "io_wait in h (a.py:30)"
    assert lock.holder_states == pytest.approx({"io_wait": 0.45, "native": 0.4, "gil_held": 0.15})


def test_a_holder_spread_over_functions_is_not_named():
    # 11 holds the lock for a third of the time in each of h, k and m: no function has half
    # of it, so none is named.
    H, K, M = ("h", "/app/a.py", 30), ("k", "/app/a.py", 40), ("m", "/app/a.py", 50)
    threads = {
        11: _series([0.0, 0.32, 0.34, 0.65, 0.67], [IO_WAIT, GIL_HELD] * 2 + [IO_WAIT]),
        12: {**_series([0.0], [LOCK_WAIT]), "locks": [0xA]},
    }
    frames = {
        11: FrameSeries([0.0, 0.33, 0.66], [(*BOOT, H), (*BOOT, K), (*BOOT, M)]),
        12: FrameSeries([0.0], [(*BOOT, F)]),
    }
    (lock,) = _stacked(threads, frames).locks
    assert lock.held_across is None


def test_a_long_timeline_is_resampled_to_the_cap_keeping_dominant_states():
    spans = []
    for index in range(1000):
        begin = index / 1000
        # 80% held, 20% waiting in every millisecond.
        spans.append(StateSpan(1, "gil_held", begin, begin + 0.0008))
        spans.append(StateSpan(1, "gil_wait", begin + 0.0008, begin + 0.001))
    capped = cap_timeline(spans, 1.0, 100)
    assert len(capped) <= 100
    assert {span.state for span in capped} == {"gil_held"}
    assert capped[0].start_s == pytest.approx(0.0) and capped[-1].end_s == pytest.approx(1.0)
