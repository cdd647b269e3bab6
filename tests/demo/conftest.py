"""Fixtures of the demo tests."""

from __future__ import annotations

import multiprocessing.resource_tracker

import pytest


@pytest.fixture(scope="session", autouse=True)
def _resource_tracker_running():
    """Start multiprocessing's resource tracker before any leak check takes its snapshot.

    Any "spawn" start launches this one helper process, which by design lives as long as the
    interpreter does; it is multiprocessing's singleton, not a process the demo leaks. The
    demo's own worker processes are still checked by ``no_leaks``.
    """
    multiprocessing.resource_tracker.ensure_running()
