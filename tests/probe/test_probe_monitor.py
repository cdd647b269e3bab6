"""gilwise.monitor / gilwise.profile: life cycle, clean-up, errors, injected runtimes."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

import gilwise
import workloads
from gilwise._model import SCHEMA, Profile
from gilwise._runtime import RuntimeFacts
from gilwise.errors import ProbeUnavailableError
from gilwise.probe import _child, _procfs, _sampler

pytestmark = pytest.mark.usefixtures("no_leaks")

FREE_THREADED = RuntimeFacts((3, 13, 0), "CPython", 2, False, True, "linux")


def test_profile_returns_the_result_and_a_profile_with_a_verdict():
    result, profile = gilwise.profile(sum, range(10))
    assert result == 45
    assert isinstance(profile, Profile)
    assert profile.verdict is not None
    assert profile.samples >= 1
    assert profile.to_dict()["schema"] == SCHEMA


def test_monitor_profile_is_ready_only_after_the_block():
    with gilwise.monitor() as mon, pytest.raises(RuntimeError, match=r"after the `with"):
        _ = mon.profile
    assert mon.profile.wall_s >= 0


def test_a_monitor_runs_once():
    with gilwise.monitor() as mon:
        pass
    with pytest.raises(RuntimeError, match="create a new gilwise"), mon:
        pass


def test_exceptions_propagate_and_the_sampler_is_cleaned_up():
    def boom():
        raise ValueError("from the profiled code")

    with pytest.raises(ValueError, match="from the profiled code"):
        gilwise.profile(boom)


def test_the_stack_sampler_thread_is_not_reported():
    with gilwise.monitor() as mon:
        workloads.spinner(0.2)
    names = [t.name for t in mon.profile.threads]
    assert "gilwise-stacks" not in names
    assert mon.profile.extra["probe_gil_s"] >= 0


def test_stacks_can_be_disabled_and_the_report_says_functions_are_missing():
    with gilwise.monitor(stack_rate_hz=None) as mon:
        workloads.spinner(0.1)
    assert mon.profile.functions == ()
    assert any(note.startswith("functions:") for note in mon.profile.unavailable)


def test_timeline_spans_are_within_the_run_and_capped():
    with gilwise.monitor(max_timeline_spans=50) as mon:
        workloads.run_threads(workloads.spinner, 2, 0.3)
    timeline = mon.profile.timeline
    assert 0 < len(timeline) <= 60
    assert all(0 <= span.start_s < span.end_s <= mon.profile.wall_s + 1e-6 for span in timeline)


def test_free_threaded_runtime_reports_no_held_fraction_never_zero():
    with gilwise.monitor(runtime=FREE_THREADED) as mon:
        workloads.run_threads(workloads.spinner, 2, 0.2)
    profile = mon.profile
    assert profile.held_fraction is None
    assert profile.python.gil_enabled is False
    assert all(t.gil_held_s is None and t.gil_wait_s is None for t in profile.threads)
    assert any("GIL is disabled" in note for note in profile.unavailable)
    assert profile.verdict is not None and "GIL is off" in profile.verdict.reason


def test_without_proc_the_monitor_says_what_is_missing(monkeypatch):
    monkeypatch.setattr(_procfs, "available", lambda: "/proc/<pid>/task is not available")
    with pytest.raises(ProbeUnavailableError, match="needs Linux"), gilwise.monitor():
        pass


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_an_unreadable_process_gives_an_error_that_says_what_to_do(monkeypatch, start_method):
    monkeypatch.setattr(_child, "start_method", start_method)
    fake_child = "import sys; sys.stdin.readline(); sys.stdout.write('Epermission denied')"
    monkeypatch.setattr(_child, "sampler_command", lambda: [sys.executable, "-c", fake_child])

    def unreadable(config):
        raise OSError("permission denied")

    monkeypatch.setattr(_sampler, "Sampler", unreadable)  # what the forked child runs
    with pytest.raises(ProbeUnavailableError, match="ptrace_scope"), gilwise.monitor():
        pass


@pytest.mark.parametrize("rate", [0, -5, 1e9])
def test_bad_rates_are_rejected(rate):
    with pytest.raises(ValueError, match="rate_hz"):
        gilwise.monitor(rate_hz=rate)


def test_short_lived_threads_are_discovered_and_attributed():
    with gilwise.monitor() as mon:
        for _ in range(5):
            workloads.run_threads(workloads.spinner, 3, 0.05)
    profile = mon.profile
    # Names come from stack snapshots, which a thread this short may miss: count by id.
    workers = [t for t in profile.threads if t.native_id != threading.get_native_id()]
    assert len(workers) >= 12  # 15 threads ran; a very short one may fall between samples
    assert sum(t.gil_held_s for t in workers) > 0.5 * 5 * 0.05
    assert profile.extra["sampler_errors"] == []


def test_gilwise_own_frames_are_not_reported_as_functions():
    """Starting and stopping the monitor runs gilwise code; the report lists only the user's."""
    package_dir = str(Path(gilwise.__file__).resolve().parent) + os.sep
    with gilwise.monitor() as mon:
        workloads.spinner(0.3)
    files = [function.file for function in mon.profile.functions]
    assert any(file.endswith("workloads.py") for file in files), files
    assert not [file for file in files if file.startswith(package_dir)]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_inside_the_block_leaves_the_parents_profile_alone():
    read_end, write_end = os.pipe()
    with gilwise.monitor() as mon:
        pid = os.fork()
        if pid == 0:
            try:
                try:
                    mon.stop()
                except RuntimeError as exc:
                    os.write(write_end, b"refused" if "forked" in str(exc) else b"other")
            finally:
                os._exit(0)
        os.close(write_end)
        answer = os.read(read_end, 64)
        os.close(read_end)
        os.waitpid(pid, 0)
        workloads.spinner(0.1)
    assert answer == b"refused"
    assert mon.profile.samples > 50  # the parent's sampler ran on, untouched by the child
    # After the child is gone the parent spins 0.1 s holding the GIL: the sampler saw it.
    # (Not held_fraction over the whole block: the wait for the child holds no GIL.)
    main = mon.profile.thread(threading.get_native_id())
    assert main.gil_held_s >= 0.09
