"""The gilwise.profile/2 JSON contract round-trips and rejects other documents."""

from __future__ import annotations

import json

import pytest

from gilwise._model import SCHEMA, Profile, PythonInfo, StateSpan, ThreadStats, Verdict


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
    with pytest.raises(ValueError, match=r"gilwise\.profile/2.*'other/2'"):
        Profile.from_dict({"schema": "other/2"})


def test_thread_lookup_names_known_threads():
    with pytest.raises(KeyError, match="worker"):
        _profile().thread("nope")


def _profile_v2() -> Profile:
    from gilwise._model import Frame, LockStats, StackStats

    main, leaf = Frame("main", "app.py", 3), Frame("write_record", "app.py", 12)
    child = Profile(PythonInfo("3.11.7", "CPython", True), 2, 0.5, 0.9, (), pid=11, parent_pid=10)
    return Profile(
        PythonInfo("3.11.7", "CPython", True),
        2,
        1.0,
        0.2,
        (ThreadStats("w", 42, 1.0, 0.1, 0.1, 0.0, 0.0, 0.6, 0.3, idle_s=0.0, join_wait_s=0.0),),
        stacks=(
            StackStats(42, "lock_wait", (main, leaf), 0.3, 30),
            StackStats(42, "io_wait", (main, leaf), 0.6, 60),
            StackStats(43, "idle", (main,), 0.5, 50),
        ),
        locks=(
            LockStats(
                0xDEAD,
                "write_record (app.py:12)",
                ("w",),
                0.3,
                0.1,
                ("write_record",),
                {"io_wait": 0.3},
                "io_wait in write_record (app.py:14)",
            ),
        ),
        pid=10,
        processes=(child,),
        exit_code=-11,
        end_reason="signal SIGSEGV",
    )


def test_schema_2_fields_round_trip_with_one_frame_table():
    profile = _profile_v2()
    data = json.loads(profile.to_json())
    assert data["schema"] == "gilwise.profile/2"
    assert len(data["frames"]) == 2  # deduplicated across the three stacks
    assert data["stacks"][0]["frames"] == [0, 1]
    assert Profile.from_json(profile.to_json()) == profile


def test_schema_1_documents_still_load_with_defaults():
    data = json.loads(_profile().to_json())
    data["schema"] = "gilwise.profile/1"
    for key in ("locks", "stacks", "frames", "processes", "pid", "parent_pid"):
        data.pop(key)
    old = Profile.from_dict(data)
    assert old.stacks == () and old.locks == () and old.processes == ()
    assert old.threads[0].idle_s is None
