"""The speedscope file: valid against speedscope's schema, one profile per thread (and per
child process), every stack ending in its state frame, weights in seconds that add up to
each thread's state seconds."""

from __future__ import annotations

import json

import pytest
from report_profiles import io_profile, stacked_profile
from speedscope_schema import SPEEDSCOPE_SCHEMA

from gilwise._model import Profile
from gilwise.report import render, speedscope_document
from gilwise.report._speedscope import STATE_FRAMES

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the test extra")


def _stacks(doc: dict, profile_name: str) -> dict[tuple[str, ...], float]:
    """The named profile's stacks as frame-name tuples -> seconds (summed)."""
    frames = doc["shared"]["frames"]
    (profile,) = [p for p in doc["profiles"] if p["name"] == profile_name]
    out: dict[tuple[str, ...], float] = {}
    for sample, weight in zip(profile["samples"], profile["weights"]):
        key = tuple(frames[i]["name"] for i in sample)
        out[key] = out.get(key, 0.0) + weight
    return out


def test_every_profile_is_valid_against_the_speedscope_schema(any_profile: Profile):
    doc = json.loads(render(any_profile, "speedscope"))
    jsonschema.validate(doc, SPEEDSCOPE_SCHEMA)
    for profile in doc["profiles"]:
        assert profile["unit"] == "seconds"
        assert len(profile["samples"]) == len(profile["weights"])
        assert all(0 <= i < len(doc["shared"]["frames"]) for s in profile["samples"] for i in s)


def test_a_schema_error_would_be_caught():
    doc = speedscope_document(stacked_profile())
    doc["profiles"][0]["unit"] = "parsecs"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SPEEDSCOPE_SCHEMA)


def test_one_profile_per_thread_and_per_child_process_thread():
    doc = speedscope_document(stacked_profile())
    assert [p["name"] for p in doc["profiles"]] == [
        "pid 999 · MainThread (tid 1000)",
        "pid 999 · worker-1 (tid 1001)",
        "pid 999 · worker-2 (tid 1002)",
        "pid 5000 · MainThread (tid 5000)",
    ]
    assert doc["name"] == "gilwise: python main.py"
    assert doc["exporter"].startswith("gilwise ")


def test_stacks_end_in_the_state_and_weigh_their_seconds():
    doc = speedscope_document(stacked_profile())
    worker_1 = _stacks(doc, "pid 999 · worker-1 (tid 1001)")
    assert worker_1 == pytest.approx(
        {
            ("_bootstrap", "run", "work", "spin", "[GIL held]"): 0.8,
            ("_bootstrap", "run", "work", "[GIL held]"): 0.2,
            ("_bootstrap", "run", "work", "spin", "[waiting for the GIL]"): 0.9,
            ("_bootstrap", "run", "work", "digest", "[native]"): 0.1,
        }
    )
    main = _stacks(doc, "pid 999 · MainThread (tid 1000)")
    assert main == pytest.approx(
        {("<module>", "[GIL held]"): 0.1, ("<module>", "join", "[join]"): 1.9}
    )


def test_time_no_stack_explains_is_a_bare_state_frame():
    # worker-2 waited 1.0 s for the GIL but stacks account for 0.6 s of it.
    doc = speedscope_document(stacked_profile())
    worker_2 = _stacks(doc, "pid 999 · worker-2 (tid 1002)")
    assert worker_2[("[waiting for the GIL]",)] == pytest.approx(0.4)
    assert sum(worker_2.values()) == pytest.approx(2.0)


def test_without_stacks_each_thread_is_its_states():
    doc = speedscope_document(io_profile())
    fetch_0 = _stacks(doc, "fetch-0 (tid 2000)")
    assert fetch_0 == pytest.approx({("[GIL held]",): 0.01, ("[I/O]",): 0.98, ("[unknown]",): 0.01})
    profile = next(p for p in doc["profiles"] if p["name"] == "fetch-0 (tid 2000)")
    assert profile["endValue"] == pytest.approx(1.0)


def test_frames_carry_file_and_line_and_are_shared():
    doc = speedscope_document(stacked_profile())
    frames = doc["shared"]["frames"]
    spins = [f for f in frames if f["name"] == "spin"]
    assert spins == [{"name": "spin", "file": "/home/user/project/app/main.py", "line": 5}]
    assert {f["name"] for f in frames if "file" not in f} <= set(STATE_FRAMES.values())


def test_every_state_has_its_named_frame():
    assert STATE_FRAMES == {
        "gil_held": "[GIL held]",
        "gil_wait": "[waiting for the GIL]",
        "native": "[native]",
        "io_wait": "[I/O]",
        "lock_wait": "[lock]",
        "idle": "[idle]",
        "join_wait": "[join]",
        "result_wait": "[waiting for result]",
        "unknown": "[unknown]",
    }


def test_the_busiest_thread_opens_first():
    doc = speedscope_document(stacked_profile())
    # worker-1: 1.0 held + 0.9 wait + 0.1 native = 2.0 s busy; MainThread mostly joins.
    assert doc["profiles"][doc["activeProfileIndex"]]["name"] == "pid 999 · worker-1 (tid 1001)"
