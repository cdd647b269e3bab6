"""Samples -> Profile on fake probe results (no /proc, no clocks): every number is known."""

from __future__ import annotations

import pytest

from gilwise.model import StateSpan
from gilwise.probe._build import (
    attribute_functions,
    build_profile,
    cap_timeline,
    held_seconds,
)
from gilwise.probe._procfs import FUTEX, GIL_HELD, GIL_WAIT, IO_WAIT, NATIVE, RUNNING
from gilwise.probe._stacks import FrameSeries
from gilwise.runtime import RuntimeFacts

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


def test_functions_split_state_spans_at_frame_snapshots():
    frames = FrameSeries([0.0, 0.25], [("f", "a.py", 1), ("g", "a.py", 9)])
    spans = [(0.0, 0.5, GIL_HELD), (0.5, 1.0, GIL_WAIT)]
    out = attribute_functions(spans, frames)
    assert out[("f", "a.py", 1)][GIL_HELD] == pytest.approx(0.25)
    assert out[("g", "a.py", 9)][GIL_HELD] == pytest.approx(0.25)
    assert out[("g", "a.py", 9)][GIL_WAIT] == pytest.approx(0.5)


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
