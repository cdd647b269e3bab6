"""Every pipeline test checks that no thread or process outlives it."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_leaks(no_leaks):
    yield
