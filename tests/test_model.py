"""The gilwise.profile/1 JSON contract round-trips and rejects other documents."""

from __future__ import annotations

import json

import pytest

from gilwise.model import SCHEMA, Profile, PythonInfo, StateSpan, ThreadStats, Verdict


def _profile() -> Profile:
    thread = ThreadStats("worker", 42, 1.0, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0)
    return Profile(
        PythonInfo("3.11.7", "CPython", True),
        2,
        1.0,
        0.99,
        (thread,),
        verdict=Verdict("gil-bound", "process", 1.9, "because"),
        timeline=(StateSpan(42, "gil_held", 0.0, 0.5),),
    )


def test_round_trip_keeps_every_field():
    profile = _profile()
    assert Profile.from_json(profile.to_json()) == profile


def test_schema_keys_are_the_contract():
    data = json.loads(_profile().to_json())
    assert data["schema"] == SCHEMA
    assert set(data["python"]) == {"version", "implementation", "gil_enabled"}
    assert data["gil"] == {"held_fraction": 0.99}
    assert {
        "name",
        "native_id",
        "wall_s",
        "cpu_s",
        "gil_held_s",
        "gil_wait_s",
        "native_s",
        "io_wait_s",
        "lock_wait_s",
    } <= set(data["threads"][0])
    assert set(data["verdict"]) == {"kind", "recommended_backend", "expected_speedup", "reason"}


def test_unknown_schema_is_refused_with_its_name():
    with pytest.raises(ValueError, match=r"gilwise\.profile/1.*'other/2'"):
        Profile.from_dict({"schema": "other/2"})


def test_thread_lookup_names_known_threads():
    with pytest.raises(KeyError, match="worker"):
        _profile().thread("nope")
