"""pytest plugin: ``pytest --gilwise[=PATH]`` profiles the GIL of the whole test session.

Installed with gilwise (entry point ``pytest11``) and inert unless ``--gilwise`` is given:
without it pytest only sees two options, nothing else is imported or registered. With it,
a ``gilwise.monitor`` runs from session start to session finish, the profile is written to
PATH (the format follows the suffix: .json, .html, .speedscope.json, .txt...; json when
the suffix names no format; default ``gilwise-session.json``), and the terminal summary
shows the verdict and the tests whose threads waited longest for the GIL.

Per-test attribution: the plugin records when each test started and ended (setup to
teardown, on the monotonic clock the probe also uses) and adds up the profile's timeline
spans inside that window: GIL wait is the seconds any thread waited for the GIL while the
test ran, GIL held the seconds some thread held it. Tests run in the main process only:
with pytest-xdist (``-n``) the tests run in workers this monitor does not see.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import pytest

if TYPE_CHECKING:
    from gilwise._model import Profile
    from gilwise.probe import Monitor

DEFAULT_PATH = "gilwise-session.json"
DEFAULT_TOP = 10


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gilwise", "GIL profile of the test session (gilwise)")
    group.addoption(
        "--gilwise",
        action="store",
        nargs="?",
        const=DEFAULT_PATH,
        default=None,
        metavar="PATH",
        dest="gilwise_path",
        help=(
            "profile the GIL while the tests run; write the profile to PATH (format from the "
            f"suffix, json if none; default {DEFAULT_PATH}) and show the verdict and the "
            "tests with the most GIL wait. Give PATH as --gilwise=PATH."
        ),
    )
    group.addoption(
        "--gilwise-top",
        action="store",
        type=int,
        default=DEFAULT_TOP,
        metavar="N",
        dest="gilwise_top",
        help=f"how many tests to list by GIL wait (default {DEFAULT_TOP}; 0: none)",
    )


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("gilwise_path", None)
    if path is None or hasattr(config, "workerinput"):  # off, or an xdist worker
        return
    output = Path(path)
    if output.suffix == ".py" or output.is_dir():
        raise pytest.UsageError(
            f"--gilwise took {path!r} as the file to write the profile to, but it looks like a "
            f"test path; write --gilwise=PROFILE.json (or put --gilwise after the test paths)"
        )
    top = config.getoption("gilwise_top")
    if top < 0:
        raise pytest.UsageError(f"--gilwise-top needs 0 or more tests, got {top}")
    # With pytest-xdist (-n N) the tests run in worker processes this monitor does not see.
    in_workers = bool(getattr(config.option, "numprocesses", None))
    config.pluginmanager.register(
        SessionProfiler(output, top, in_workers=in_workers), "gilwise-session-profiler"
    )


@dataclass(frozen=True)
class PerTestGil:
    """What the GIL did while one test ran (setup to teardown), in seconds."""

    nodeid: str
    wall_s: float
    gil_held_s: float
    gil_wait_s: float


class SessionProfiler:
    """Registered only with ``--gilwise``: the monitor, the test boundaries, the summary."""

    def __init__(self, output: Path, top: int, *, in_workers: bool = False) -> None:
        self.output = output
        self.top = top
        self.in_workers = in_workers
        self.monitor: Optional[Monitor] = None
        self.profile: Optional[Profile] = None
        self.tests: list[tuple[str, float, float]] = []  # (nodeid, start, end), monotonic
        self.error: Optional[str] = None
        self.written_format: Optional[str] = None
        self._started_s: dict[str, float] = {}

    # -- collecting ----------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        import gilwise

        monitor = gilwise.monitor()
        monitor.command = "pytest " + " ".join(session.config.invocation_params.args)
        try:
            monitor.start()
        except gilwise.ProbeUnavailableError as exc:
            self.error = str(exc)  # the tests still run; the summary says why no profile
            return
        self.monitor = monitor

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self._started_s[nodeid] = time.monotonic()

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        started = self._started_s.pop(nodeid, None)
        if started is not None:
            self.tests.append((nodeid, started, time.monotonic()))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self._stop()

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self._stop()  # an aborted session may skip sessionfinish: never leave the sampler

    def _stop(self) -> None:
        monitor, self.monitor = self.monitor, None
        if monitor is None:
            return
        self.profile = monitor.stop()
        from gilwise.report import choose_format, render

        fmt = choose_format(None, self.output, default="json")
        try:
            self.output.parent.mkdir(parents=True, exist_ok=True)
            self.output.write_text(render(self.profile, fmt), encoding="utf-8")
        except OSError as exc:  # the tests' outcome stands; the summary says what went wrong
            self.error = f"could not write {self.output}: {exc}"
            return
        self.written_format = fmt

    # -- reporting -----------------------------------------------------------------------

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        write = terminalreporter.write_line
        terminalreporter.section("gilwise")
        if self.profile is None:
            write(f"no GIL profile: {self.error or 'the monitor did not run'}")
            return
        profile = self.profile
        held = "n/a" if profile.held_fraction is None else f"{profile.held_fraction:.1%}"
        where = (
            f"written to {self.output} ({self.written_format})"
            if self.written_format is not None
            else f"NOT written: {self.error}"
        )
        write(
            f"profile of the session ({profile.wall_s:.2f} s, {len(profile.threads)} threads, "
            f"GIL held {held}) {where}"
        )
        if self.in_workers:
            write("tests ran in pytest-xdist workers, which this profile does not see: use -n 0")
        if profile.verdict is not None:
            verdict = profile.verdict
            write(
                f"verdict: {verdict.kind}  recommended backend: {verdict.recommended_backend}  "
                f"expected speedup: {verdict.expected_speedup:.1f}x"
            )
            write(verdict.reason)
        if self.top == 0:
            return
        if profile.held_fraction is None:
            write("GIL wait per test: not measured here (see the profile's 'unavailable')")
            return
        ranked = sorted(per_test_gil(profile, self.tests), key=lambda t: -t.gil_wait_s)
        waited = [test for test in ranked if test.gil_wait_s > 0][: self.top]
        if not waited:
            write(f"no test's threads waited for the GIL ({len(ranked)} tests)")
            return
        write("")
        write(f"tests with the most GIL wait (top {len(waited)} of {len(ranked)}; seconds)")
        write(f"{'GIL wait':>9} {'GIL held':>9} {'wall':>8}  test")
        for test in waited:
            write(
                f"{test.gil_wait_s:9.3f} {test.gil_held_s:9.3f} {test.wall_s:8.3f}  {test.nodeid}"
            )


def per_test_gil(profile: Profile, tests: list[tuple[str, float, float]]) -> list[PerTestGil]:
    """Each test's GIL held / wait seconds, from the profile's timeline spans inside its window.

    ``tests`` holds (nodeid, start, end) on the monotonic clock; the profile's timeline is in
    seconds since its ``extra["start_monotonic_s"]``. Held counts one thread at a time (only
    one holds the GIL); wait adds up every waiting thread.
    """
    origin = profile.extra.get("start_monotonic_s")
    if origin is None:
        raise ValueError(
            "this profile does not say when its timeline began (extra.start_monotonic_s): "
            "profile with gilwise.monitor() from this version"
        )
    spans = [span for span in profile.timeline if span.state in ("gil_held", "gil_wait")]
    spans.sort(key=lambda span: span.start_s)
    starts = [span.start_s for span in spans]
    longest = max((span.end_s - span.start_s for span in spans), default=0.0)
    results = []
    for nodeid, begin_mono, end_mono in tests:
        begin, end = begin_mono - origin, end_mono - origin
        held = wait = 0.0
        # Spans that can overlap [begin, end) start after begin - longest and before end.
        first = bisect.bisect_left(starts, begin - longest)
        last = bisect.bisect_left(starts, end)
        for span in spans[first:last]:
            overlap = min(span.end_s, end) - max(span.start_s, begin)
            if overlap <= 0:
                continue
            if span.state == "gil_held":
                held += overlap
            else:
                wait += overlap
        results.append(PerTestGil(nodeid, end - begin, held, wait))
    return results
