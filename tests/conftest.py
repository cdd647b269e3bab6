"""Shared fixtures. Every test leaves no thread, process or server behind."""

from __future__ import annotations

import sys
import threading

import psutil
import pytest

# pytester runs pytest inside tests (tests/integrations/test_pytest_plugin.py).
pytest_plugins = ["pytester"]


@pytest.fixture
def no_leaks():
    """Fail the test if it leaves a new thread or child process running."""
    threads_before = set(threading.enumerate())
    children_before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    # The process worker service keeps idle workers warm for minutes by design (shared by
    # the tests, as by a program's executors): an idle service is not a leak; a backend
    # never shut down (an open lease) is, and so are its workers.
    service = sys.modules.get("gilwise.backends._service")
    warm_pids, warm_thread = service.idle_members(5.0) if service is not None else (set(), None)
    leaked_threads = [
        t
        for t in threading.enumerate()
        if t not in threads_before and t.is_alive() and t is not warm_thread
    ]
    for thread in leaked_threads:
        thread.join(timeout=5)
    still = [t.name for t in leaked_threads if t.is_alive()]
    assert not still, f"threads left running: {still}"
    children = [
        p
        for p in psutil.Process().children(recursive=True)
        if p.pid not in children_before and p.pid not in warm_pids
    ]
    _gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"child processes left running: {[p.pid for p in alive]}"
