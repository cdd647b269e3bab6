"""The json format is exactly the gilwise.profile/2 document of the profile."""

from __future__ import annotations

import json

import pytest
from report_profiles import free_threaded_profile, gil_bound_profile

from gilwise._model import SCHEMA, Profile
from gilwise.report import render

pytestmark = pytest.mark.multiversion


def test_json_is_profile_to_json(any_profile: Profile):
    assert render(any_profile, "json") == any_profile.to_json() + "\n"


def test_json_round_trips_to_an_equal_profile(any_profile: Profile):
    assert Profile.from_json(render(any_profile, "json")) == any_profile


def test_unmeasured_held_fraction_is_null_not_zero():
    data = json.loads(render(free_threaded_profile(), "json"))
    assert data["schema"] == SCHEMA
    assert data["gil"]["held_fraction"] is None
    assert [t["gil_held_s"] for t in data["threads"]] == [None, None]


def test_timeline_can_be_left_out():
    profile = gil_bound_profile()
    full = json.loads(render(profile, "json"))
    short = json.loads(render(profile, "json", include_timeline=False))
    assert len(full["timeline"]) == len(profile.timeline) == 801
    assert "timeline" not in short
    assert short["threads"] == full["threads"]
