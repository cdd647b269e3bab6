"""``pytest --gilwise[=PATH]``, run by pytester on small test files with known answers.

The inner sessions run in a subprocess, as a user's ``pytest`` would: the plugin is found
through the installed entry point, not imported by this test. Known answers: a test that
spins pure Python holds the GIL for all its wall time (so does one with two spinning
threads, which also wait for it); a test that sleeps holds it for almost none.
"""

from __future__ import annotations

import json
import re

import pytest

from gilwise._model import Profile, PythonInfo, StateSpan
from gilwise._pytest_plugin import PerTestGil, per_test_gil

TESTS = """
import threading, time

def spin(seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass

def test_two_spinning_threads():
    threads = [threading.Thread(target=spin, args=(0.4,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

def test_sleeps():
    time.sleep(0.3)

def test_spins_alone():
    spin(0.3)
"""

ROW = re.compile(r"^\s*(?P<wait>\d+\.\d+)\s+(?P<held>\d+\.\d+)\s+(?P<wall>\d+\.\d+)\s+(?P<id>\S+)$")


def rows(lines: list[str]) -> dict[str, PerTestGil]:
    found = {}
    for line in lines:
        match = ROW.match(line)
        if match:
            found[match["id"]] = PerTestGil(
                match["id"], float(match["wall"]), float(match["held"]), float(match["wait"])
            )
    return found


def test_session_profile_verdict_and_tests_by_gil_wait(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_work=TESTS)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "--gilwise", timeout=240)
    result.assert_outcomes(passed=3)
    out = result.outlines
    result.stdout.fnmatch_lines(
        [
            "*= gilwise =*",
            "profile of the session (*threads, GIL held *) written to gilwise-session.json (json)",
            "verdict: * recommended backend: * expected speedup: *x",
            "tests with the most GIL wait (top * of 3; seconds)",
        ]
    )
    saved = Profile.from_json((pytester.path / "gilwise-session.json").read_text("utf-8"))
    assert saved.command is not None and saved.command.startswith("pytest ")
    assert saved.verdict is not None
    assert f"verdict: {saved.verdict.kind} " in "\n".join(out)
    table = rows(out)
    both = table["test_work.py::test_two_spinning_threads"]
    # One of the two spinners holds the GIL at every moment, the other waits for it.
    assert both.gil_held_s >= 0.8 * both.wall_s
    assert both.gil_wait_s > 0.0
    assert both.wall_s >= 0.4
    # The first row is the test with the most GIL wait.
    first = next(line for line in out if ROW.match(line))
    assert first.endswith("test_two_spinning_threads")
    if "test_work.py::test_spins_alone" in table:  # listed only if some thread waited
        alone = table["test_work.py::test_spins_alone"]
        assert alone.gil_held_s >= 0.8 * alone.wall_s
    if "test_work.py::test_sleeps" in table:
        asleep = table["test_work.py::test_sleeps"]
        assert asleep.gil_held_s <= 0.1 * asleep.wall_s


@pytest.mark.parametrize(
    ("name", "check"),
    [
        ("out/run.html", lambda text: text.lstrip().lower().startswith("<!doctype html")),
        ("run.speedscope.json", lambda text: "speedscope" in json.loads(text)["$schema"]),
    ],
)
def test_the_suffix_picks_the_format(pytester: pytest.Pytester, name: str, check) -> None:
    pytester.makepyfile(test_one="def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess(
        "-p", "no:randomly", f"--gilwise={name}", "--gilwise-top=0", timeout=240
    )
    result.assert_outcomes(passed=1)
    written = pytester.path / name
    assert check(written.read_text("utf-8"))
    result.stdout.fnmatch_lines([f"*written to {name} (*)"])
    assert not any("tests with the most GIL wait" in line for line in result.outlines)


def test_failing_tests_still_get_a_profile_json_for_unknown_suffixes(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_bad="def test_fails():\n    assert 1 == 2\n")
    result = pytester.runpytest_subprocess("-p", "no:randomly", "--gilwise=bad.prof", timeout=240)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*written to bad.prof (json)"])
    assert Profile.from_json((pytester.path / "bad.prof").read_text("utf-8")).wall_s > 0


def test_ctrl_c_during_the_session_still_writes_the_profile(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_interrupted="""
def test_first():
    pass

def test_interrupted():
    raise KeyboardInterrupt

def test_never_run():
    pass
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly", "--gilwise=cut.json", timeout=240)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*written to cut.json (json)"])
    assert Profile.from_json((pytester.path / "cut.json").read_text("utf-8")).wall_s > 0


def test_where_the_probe_cannot_run_the_tests_still_run_and_the_summary_says_why(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, no_leaks
) -> None:
    # In-process, so the platform check can be replaced by what a /proc-less system reports.
    from gilwise.probe import _procfs

    monkeypatch.setattr(_procfs, "available", lambda: "no /proc filesystem here")
    pytester.makepyfile(test_runs="def test_nothing():\n    pass\n")
    result = pytester.runpytest("-p", "no:randomly", "--gilwise=none.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*no GIL profile: *no /proc filesystem here*"])
    assert not (pytester.path / "none.json").exists()


def test_an_unwritable_path_is_reported_not_a_crash(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_one="def test_nothing():\n    pass\n")
    (pytester.path / "taken").write_text("a file, not a directory")
    result = pytester.runpytest("-p", "no:randomly", "--gilwise=taken/run.json")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*GIL held *) NOT written: could not write taken/run.json: *"])


def test_inert_without_the_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_inert="""
import sys

def test_plugin_loaded_but_nothing_measured(request):
    assert request.config.pluginmanager.hasplugin("gilwise")
    assert not request.config.pluginmanager.hasplugin("gilwise-session-profiler")
    assert "gilwise.probe" not in sys.modules
    assert "gilwise.report" not in sys.modules
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly", timeout=240)
    result.assert_outcomes(passed=1)
    assert not any("= gilwise =" in line for line in result.outlines)
    assert not list(pytester.path.glob("gilwise-*"))


def test_a_test_path_taken_for_the_output_is_refused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_path="def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("--gilwise", "test_path.py", timeout=240)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--gilwise took 'test_path.py'*looks like a test path*"])
    assert (pytester.path / "test_path.py").read_text("utf-8").startswith("def test_nothing")


def test_in_process_session_leaves_no_sampler(pytester: pytest.Pytester, no_leaks) -> None:
    pytester.makepyfile(test_quick="def test_nothing():\n    pass\n")
    result = pytester.runpytest("-p", "no:randomly", "--gilwise=quick.json")
    result.assert_outcomes(passed=1)
    assert (pytester.path / "quick.json").is_file()


def _profile(spans: list[StateSpan], origin: float) -> Profile:
    return Profile(
        python=PythonInfo("3.11.7", "CPython", True),
        cores=2,
        wall_s=10.0,
        held_fraction=0.5,
        threads=(),
        timeline=tuple(spans),
        extra={"start_monotonic_s": origin},
    )


def test_per_test_attribution_adds_up_the_spans_inside_each_window() -> None:
    origin = 1000.0
    spans = [
        StateSpan(1, "gil_held", 0.0, 2.0),
        StateSpan(2, "gil_wait", 0.5, 1.5),
        StateSpan(2, "gil_held", 2.0, 3.0),
        StateSpan(1, "gil_wait", 2.0, 2.5),
        StateSpan(1, "io_wait", 3.0, 5.0),
    ]
    tests = [
        ("a", origin + 0.0, origin + 1.0),  # held 1.0, wait 0.5 (0.5..1.0)
        ("b", origin + 1.0, origin + 3.0),  # held 1.0 + 1.0, wait 0.5 + 0.5
        ("c", origin + 3.0, origin + 5.0),  # only I/O
    ]
    result = {test.nodeid: test for test in per_test_gil(_profile(spans, origin), tests)}
    assert result["a"] == PerTestGil("a", 1.0, 1.0, 0.5)
    assert result["b"] == PerTestGil("b", 2.0, 2.0, 1.0)
    assert result["c"] == PerTestGil("c", 2.0, 0.0, 0.0)


def test_per_test_attribution_needs_the_timeline_origin() -> None:
    profile = _profile([], 0.0)
    profile.extra.clear()
    with pytest.raises(ValueError, match=r"extra\.start_monotonic_s"):
        per_test_gil(profile, [("a", 0.0, 1.0)])
