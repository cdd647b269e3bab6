"""Two profiles of one program compared: "profile, change the model, profile again" in one view.

``compare(before, after)`` lines up what can be lined up: the whole run (wall time, the GIL's
held share, CPU, GIL waiting), each thread by name, each function by name and file (its line
may move when the code is edited), and both verdicts. Text, JSON (schema gilwise.diff/1)
and HTML (``_diff_text``, ``_diff_html``) render the same ProfileDiff and the same cells
(below), so they agree on every number.

Child processes are summed into their run's CPU and GIL wait: a change from threads to
processes moves the work into children, and the run-level figures must still compare.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Optional

from .._model import FunctionStats, Profile, ThreadStats
from . import _figures as fig

DIFF_SCHEMA = "gilwise.diff/1"
#: A change smaller than this many seconds is "no change" (below any sample interval).
SAME_S = 0.0005


@dataclass(frozen=True)
class RunFigures:
    """One run's headline figures (child processes included where they add up)."""

    command: Optional[str]
    wall_s: float
    held_fraction: Optional[float]
    cpu_s: Optional[float]  # all threads of the run and its children; None if unmeasured
    gil_wait_s: Optional[float]  # all threads' waits for the GIL, children included
    threads: int
    processes: int  # child processes followed


@dataclass(frozen=True)
class ThreadChange:
    """One thread (matched by name) before and after; a side is None if it did not exist."""

    name: str
    before: Optional[ThreadStats]
    after: Optional[ThreadStats]


@dataclass(frozen=True)
class FunctionChange:
    """One function (matched by name and file) before and after; None where it did not run."""

    function: str
    file: str
    line: int
    before: Optional[FunctionStats]
    after: Optional[FunctionStats]

    @property
    def busy_change_s(self) -> float:
        """The change of its ranked time (GIL held + wait + native + I/O), after - before."""
        return _busy(self.after) - _busy(self.before)


@dataclass(frozen=True)
class ProfileDiff:
    """Everything the diff reports show, computed once."""

    before: Profile
    after: Profile
    before_run: RunFigures
    after_run: RunFigures
    threads: tuple[ThreadChange, ...]
    functions: tuple[FunctionChange, ...]  # largest absolute change first

    @property
    def speedup(self) -> Optional[float]:
        """before wall / after wall: above 1 the after run was faster."""
        if self.after.wall_s <= 0:
            return None
        return self.before.wall_s / self.after.wall_s


def compare(before: Profile, after: Profile) -> ProfileDiff:
    """The comparison of two profiles (see the module docstring)."""
    return ProfileDiff(
        before=before,
        after=after,
        before_run=run_figures(before),
        after_run=run_figures(after),
        threads=_thread_changes(before, after),
        functions=_function_changes(before, after),
    )


def run_figures(profile: Profile) -> RunFigures:
    everything = _with_children(profile)
    threads = [t for p in everything for t in p.threads]
    return RunFigures(
        command=profile.command,
        wall_s=profile.wall_s,
        held_fraction=profile.held_fraction,
        cpu_s=_total(t.cpu_s for t in threads),
        gil_wait_s=_total(t.gil_wait_s for t in threads),
        threads=len(threads),
        processes=len(everything) - 1,
    )


def _with_children(profile: Profile) -> list[Profile]:
    out = [profile]
    for child in profile.processes:
        out.extend(_with_children(child))
    return out


def _total(values: Any) -> Optional[float]:
    """The sum, or None if any value was not measured (a partial sum would mislead)."""
    total = 0.0
    for value in values:
        if value is None:
            return None
        total += value
    return total


def _thread_changes(before: Profile, after: Profile) -> tuple[ThreadChange, ...]:
    """Threads by name, in the before run's order then the after run's new ones. Two threads
    of one run with the same name are told apart by their order (``name #2``). A child
    process's threads are named after the child's place among the children (``process 2 ·
    MainThread``): pids differ from run to run, the order a program starts them in does not."""
    before_named = _by_name(_all_threads(before))
    after_named = _by_name(_all_threads(after))
    names = list(before_named) + [name for name in after_named if name not in before_named]
    return tuple(ThreadChange(n, before_named.get(n), after_named.get(n)) for n in names)


def _all_threads(profile: Profile) -> list[ThreadStats]:
    threads = list(profile.threads)
    for number, child in enumerate(_with_children(profile)[1:], start=1):
        threads += [replace(t, name=f"process {number} · {t.name}") for t in child.threads]
    return threads


def _by_name(threads: list[ThreadStats]) -> dict[str, ThreadStats]:
    named: dict[str, ThreadStats] = {}
    for thread in threads:
        name, count = thread.name, 1
        while name in named:
            count += 1
            name = f"{thread.name} #{count}"
        named[name] = thread
    return named


def _function_changes(before: Profile, after: Profile) -> tuple[FunctionChange, ...]:
    before_by = _functions_by_key(before)
    after_by = _functions_by_key(after)
    keys = list(before_by) + [key for key in after_by if key not in before_by]
    changes = []
    for key in keys:
        old, new = before_by.get(key), after_by.get(key)
        where = new if new is not None else old
        assert where is not None
        changes.append(FunctionChange(where.function, where.file, where.line, old, new))
    changes.sort(key=lambda c: (-abs(c.busy_change_s), -_busy(c.before), c.function))
    return tuple(changes)


def _functions_by_key(profile: Profile) -> dict[tuple[str, str], FunctionStats]:
    """Functions by (name, file), child processes included; same-named entries summed."""
    out: dict[tuple[str, str], FunctionStats] = {}
    for process in _with_children(profile):
        for function in process.functions:
            key = (function.function, function.file)
            seen = out.get(key)
            out[key] = function if seen is None else _sum_functions(seen, function)
    return out


def _sum_functions(a: FunctionStats, b: FunctionStats) -> FunctionStats:
    return FunctionStats(
        a.function,
        a.file,
        min(a.line, b.line),
        a.gil_held_s + b.gil_held_s,
        a.gil_wait_s + b.gil_wait_s,
        a.native_s + b.native_s,
        a.io_wait_s + b.io_wait_s,
        a.lock_wait_s + b.lock_wait_s,
    )


def _busy(function: Optional[FunctionStats]) -> float:
    return 0.0 if function is None else fig.function_busy_s(function)


# --- how changes read (shared by text and HTML) --------------------------------------------


def speedup_words(diff: ProfileDiff) -> str:
    """``1.90x faster``, ``1.25x slower`` or ``same speed`` (within 0.5%)."""
    speedup = diff.speedup
    if speedup is None:
        return fig.NOT_MEASURED
    if abs(speedup - 1.0) < 0.005:
        return "same speed"
    if speedup > 1:
        return f"{speedup:.2f}x faster"
    return f"{1 / speedup:.2f}x slower"


def seconds_change(before: Optional[float], after: Optional[float]) -> str:
    """``+0.500`` / ``-1.000`` seconds, ``0`` within SAME_S, ``n/a`` if either is unknown."""
    if before is None or after is None:
        return fig.NOT_MEASURED
    delta = after - before
    if abs(delta) < SAME_S:
        return "0"
    return f"{delta:+.3f}"


def points_change(before: Optional[float], after: Optional[float]) -> str:
    """A change of a fraction in percentage points: ``-53.8 pts``."""
    if before is None or after is None:
        return fig.NOT_MEASURED
    delta = (after - before) * 100
    if abs(delta) < 0.05:
        return "0 pts"
    return f"{delta:+.1f} pts"


def _count_change(before: int, after: int) -> str:
    return f"{after - before:+d}" if after != before else "0"


def before_after(before: str, after: str) -> str:
    return f"{before} → {after}"


@dataclass(frozen=True)
class RunRow:
    """One row of the run-level table: label, before, after, change."""

    label: str
    before: str
    after: str
    change: str


def run_rows(diff: ProfileDiff) -> list[RunRow]:
    b, a = diff.before_run, diff.after_run
    return [
        RunRow("wall s", fig.seconds(b.wall_s), fig.seconds(a.wall_s), speedup_words(diff)),
        RunRow(
            "GIL held (parent process)" if b.processes or a.processes else "GIL held",
            fig.percent(b.held_fraction),
            fig.percent(a.held_fraction),
            points_change(b.held_fraction, a.held_fraction),
        ),
        RunRow(
            "GIL wait s (all threads)",
            fig.seconds(b.gil_wait_s),
            fig.seconds(a.gil_wait_s),
            seconds_change(b.gil_wait_s, a.gil_wait_s),
        ),
        RunRow(
            "CPU s (all threads)",
            fig.seconds(b.cpu_s),
            fig.seconds(a.cpu_s),
            seconds_change(b.cpu_s, a.cpu_s),
        ),
        RunRow("threads", str(b.threads), str(a.threads), _count_change(b.threads, a.threads)),
        RunRow(
            "child processes",
            str(b.processes),
            str(a.processes),
            _count_change(b.processes, a.processes),
        ),
    ]


@dataclass(frozen=True)
class ThreadColumn:
    heading: str
    value: Callable[[ThreadStats], Optional[float]]


THREAD_DIFF_COLUMNS: tuple[ThreadColumn, ...] = (
    ThreadColumn("wall s", lambda t: t.wall_s),
    ThreadColumn("GIL held s", lambda t: t.gil_held_s),
    ThreadColumn("GIL wait s", lambda t: t.gil_wait_s),
    ThreadColumn("native s", lambda t: t.native_s),
    ThreadColumn("I/O s", lambda t: t.io_wait_s),
    ThreadColumn("lock s", lambda t: t.lock_wait_s),
)
#: What a thread that did not exist on one side reads as.
ABSENT = "-"


def thread_cell(change: ThreadChange, column: ThreadColumn) -> str:
    """``1.000 → 0.500`` for one thread's figure; ABSENT for the side it did not exist on."""
    old = ABSENT if change.before is None else fig.seconds(column.value(change.before))
    new = ABSENT if change.after is None else fig.seconds(column.value(change.after))
    return before_after(old, new)


FUNCTION_DIFF_HEADINGS = (
    "function",
    "file:line",
    "before s",
    "after s",
    "change s",
    "GIL held s",
    "GIL wait s",
)


def function_cells(change: FunctionChange, location_chars: int = 48) -> tuple[str, ...]:
    """function, file:line, ranked seconds before / after / change, held and wait before →
    after (ABSENT where the function did not run)."""
    where = change.after if change.after is not None else change.before
    assert where is not None

    def side(stats: Optional[FunctionStats], value: Callable[[FunctionStats], float]) -> str:
        return ABSENT if stats is None else fig.seconds(value(stats))

    return (
        change.function,
        fig.location(where, location_chars),
        side(change.before, fig.function_busy_s),
        side(change.after, fig.function_busy_s),
        seconds_change(_busy(change.before), _busy(change.after)),
        before_after(
            side(change.before, lambda f: f.gil_held_s), side(change.after, lambda f: f.gil_held_s)
        ),
        before_after(
            side(change.before, lambda f: f.gil_wait_s), side(change.after, lambda f: f.gil_wait_s)
        ),
    )


def changed_functions(diff: ProfileDiff, limit: int) -> list[FunctionChange]:
    """The ``limit`` functions whose ranked time changed most (unchanged ones left out)."""
    return [c for c in diff.functions if abs(c.busy_change_s) >= SAME_S][:limit]


def verdict_lines(profile: Profile) -> tuple[str, str, str, str]:
    """kind, recommended backend, expected speedup, reason; ``none`` when not judged."""
    verdict = profile.verdict
    if verdict is None:
        return ("none", ABSENT, ABSENT, "this profile was not judged")
    return (
        verdict.kind,
        verdict.recommended_backend,
        fig.speedup(verdict.expected_speedup),
        verdict.reason,
    )


# --- json ----------------------------------------------------------------------------------


def diff_document(diff: ProfileDiff) -> dict[str, Any]:
    """The comparison as a dict (schema gilwise.diff/1)."""

    def run(figures: RunFigures, profile: Profile) -> dict[str, Any]:
        verdict = profile.verdict
        return {
            "command": figures.command,
            "wall_s": figures.wall_s,
            "held_fraction": figures.held_fraction,
            "cpu_s": figures.cpu_s,
            "gil_wait_s": figures.gil_wait_s,
            "threads": figures.threads,
            "processes": figures.processes,
            "verdict": None
            if verdict is None
            else {
                "kind": verdict.kind,
                "recommended_backend": verdict.recommended_backend,
                "expected_speedup": verdict.expected_speedup,
                "reason": verdict.reason,
            },
        }

    def thread(stats: Optional[ThreadStats]) -> Optional[dict[str, Any]]:
        if stats is None:
            return None
        return {key: value for key, value in asdict(stats).items() if key != "name"}

    def function(stats: Optional[FunctionStats]) -> Optional[dict[str, Any]]:
        if stats is None:
            return None
        return {
            "line": stats.line,
            "gil_held_s": stats.gil_held_s,
            "gil_wait_s": stats.gil_wait_s,
            "native_s": stats.native_s,
            "io_wait_s": stats.io_wait_s,
            "lock_wait_s": stats.lock_wait_s,
        }

    return {
        "schema": DIFF_SCHEMA,
        "speedup": diff.speedup,
        "before": run(diff.before_run, diff.before),
        "after": run(diff.after_run, diff.after),
        "threads": [
            {"name": c.name, "before": thread(c.before), "after": thread(c.after)}
            for c in diff.threads
        ],
        "functions": [
            {
                "function": c.function,
                "file": c.file,
                "busy_change_s": c.busy_change_s,
                "before": function(c.before),
                "after": function(c.after),
            }
            for c in diff.functions
        ],
    }


def render_diff_json(diff: ProfileDiff) -> str:
    return json.dumps(diff_document(diff), indent=2) + "\n"
