"""Fixtures of synthetic Profiles for the renderers (built in report_profiles.py)."""

from __future__ import annotations

import pytest
from report_profiles import (
    free_threaded_profile,
    gil_bound_profile,
    hostile_profile,
    io_profile,
    stacked_profile,
)

from gilwise._model import Profile

BUILDERS = {
    "gil_bound": gil_bound_profile,
    "io_bound": io_profile,
    "free_threaded": free_threaded_profile,
    "hostile": hostile_profile,
    "stacked": stacked_profile,
}


@pytest.fixture(params=sorted(BUILDERS))
def any_profile(request: pytest.FixtureRequest) -> Profile:
    """Each synthetic profile in turn."""
    return BUILDERS[request.param]()
