"""runtime.py reports this interpreter's facts; injected facts drive the free-threaded logic."""

from __future__ import annotations

import sys

import pytest

from gilwise import _runtime as runtime
from gilwise._runtime import RuntimeFacts


@pytest.mark.multiversion
def test_current_matches_this_interpreter():
    facts = runtime.current()
    assert facts.python_version == tuple(sys.version_info[:3])
    assert facts.cores >= 1
    assert facts.gil_enabled is runtime.is_gil_enabled()
    assert facts.own_gil_subinterpreters is (sys.version_info >= (3, 12))


def test_free_threaded_facts_say_threads_run_python_in_parallel():
    facts = RuntimeFacts(
        (3, 13, 0), "CPython", 2, gil_enabled=False, free_threaded_build=True, platform="linux"
    )
    assert facts.threads_run_python_in_parallel
    assert facts.version_text == "3.13.0"


def test_gil_enabled_uses_sys_probe_when_present(monkeypatch):
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    assert runtime.is_gil_enabled() is False
