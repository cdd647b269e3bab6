"""The trace format is Chrome Trace Event JSON with one complete event per StateSpan."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from typing import Any

import pytest
from report_profiles import (
    HOSTILE_NAME,
    free_threaded_profile,
    gil_bound_profile,
    hostile_profile,
    io_profile,
)

from gilwise._model import THREAD_STATES, Profile, StateSpan
from gilwise.report import render
from gilwise.report._trace import TRACE_PID

pytestmark = pytest.mark.multiversion


def _events(profile: Profile, ph: str) -> list[dict[str, Any]]:
    """The profiled program's own events of kind ``ph`` (child processes have their pids)."""
    document = json.loads(render(profile, "trace"))
    return [e for e in document["traceEvents"] if e["ph"] == ph and e["pid"] == TRACE_PID]


def test_document_shape(any_profile: Profile):
    document = json.loads(render(any_profile, "trace"))
    assert document["displayTimeUnit"] == "ms"
    assert isinstance(document["traceEvents"], list)
    children = {child.pid for child in any_profile.processes}
    assert {event["pid"] for event in document["traceEvents"]} == {TRACE_PID} | children


def test_every_span_is_one_complete_event_in_microseconds(any_profile: Profile):
    spans = _events(any_profile, "X")
    expected = sorted(
        (s.native_id, s.state, s.start_s * 1e6, (s.end_s - s.start_s) * 1e6)
        for s in any_profile.timeline
    )
    got = sorted((e["tid"], e["name"], e["ts"], e["dur"]) for e in spans)
    assert len(got) == len(expected)
    for (tid, name, ts, dur), (e_tid, e_name, e_ts, e_dur) in zip(got, expected):
        assert (tid, name) == (e_tid, e_name)
        assert ts == pytest.approx(e_ts, abs=0.001)
        assert dur == pytest.approx(e_dur, abs=0.001)
    assert all(e["cat"] == "gil" and e["name"] in THREAD_STATES for e in spans)


def test_durations_sum_per_thread_and_start_times_never_go_back(any_profile: Profile):
    by_thread: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in _events(any_profile, "X"):
        by_thread[event["tid"]].append(event)
    for native_id, events in by_thread.items():
        starts = [e["ts"] for e in events]
        assert starts == sorted(starts)
        expected_us = sum(
            (s.end_s - s.start_s) * 1e6 for s in any_profile.timeline if s.native_id == native_id
        )
        assert sum(e["dur"] for e in events) == pytest.approx(expected_us, rel=1e-9, abs=0.01)


def test_io_profile_track_reads_held_then_io_then_unknown():
    events = [e for e in _events(io_profile(), "X") if e["tid"] == 2000]
    assert [(e["name"], e["ts"], e["dur"]) for e in events] == [
        ("gil_held", 0.0, 10_000.0),
        ("io_wait", 10_000.0, 980_000.0),
        ("unknown", 990_000.0, 10_000.0),
    ]


def test_thread_names_are_escaped_by_json_not_html():
    text = render(hostile_profile(), "trace")
    assert "&lt;" not in text and "&amp;" not in text
    names = {
        e["tid"]: e["args"]["name"]
        for e in _events(hostile_profile(), "M")
        if e["name"] == "thread_name"
    }
    assert names[4000] == HOSTILE_NAME


def test_a_thread_seen_only_in_the_timeline_still_gets_a_named_track():
    profile = io_profile()
    extra = StateSpan(999, "native", 0.0, 0.5)
    profile = replace(profile, timeline=(*profile.timeline, extra))
    names = {
        e["tid"]: e["args"]["name"] for e in _events(profile, "M") if e["name"] == "thread_name"
    }
    assert names[999] == "thread 999"
    assert names[2000] == "fetch-0"


def test_verdict_is_a_global_instant_at_the_end():
    (instant,) = _events(io_profile(), "i")
    assert instant["s"] == "g"
    assert instant["ts"] == pytest.approx(1_000_000.0)
    assert instant["args"]["kind"] == "io-bound"
    assert instant["args"]["recommended_backend"] == "thread"


def test_profile_without_timeline_has_only_metadata_and_verdict():
    profile = free_threaded_profile()
    document = json.loads(render(profile, "trace"))
    assert {e["ph"] for e in document["traceEvents"]} == {"M", "i"}
    assert document["otherData"]["held_fraction"] is None
    assert document["otherData"]["gil_enabled"] is False


def test_waiter_counter_follows_the_gil_wait_spans():
    counts = [e["args"]["threads"] for e in _events(gil_bound_profile(), "C")]
    # One worker waits while the other holds, from the first turn to the last.
    assert counts == [1, 0]


def test_waiter_counter_counts_overlapping_waits():
    spans = (
        StateSpan(1, "gil_wait", 0.0, 0.3),
        StateSpan(2, "gil_wait", 0.1, 0.2),
        StateSpan(3, "gil_wait", 0.2, 0.4),
    )
    events = _events(replace(io_profile(), timeline=spans), "C")
    assert [(e["ts"], e["args"]["threads"]) for e in events] == [
        (0.0, 1),
        (100_000.0, 2),
        (300_000.0, 1),
        (400_000.0, 0),
    ]
    assert all(e["name"] == "threads waiting for the GIL" for e in events)


def test_a_child_process_is_its_own_process_shifted_to_its_start():
    from report_profiles import stacked_profile

    document = json.loads(render(stacked_profile(), "trace"))
    names = {
        e["pid"]: e["args"]["name"] for e in document["traceEvents"] if e["name"] == "process_name"
    }
    assert names == {
        TRACE_PID: "gilwise: python main.py",
        5000: "child process 5000: python child.py",
    }
    child_spans = [e for e in document["traceEvents"] if e["ph"] == "X" and e["pid"] == 5000]
    # The child started 0.5 s into the run: its spans at 0.0-0.45 s and 0.45-0.5 s move there.
    assert [(e["name"], e["ts"], e["dur"]) for e in child_spans] == [
        ("gil_held", 500_000.0, 450_000.0),
        ("io_wait", 950_000.0, 50_000.0),
    ]
