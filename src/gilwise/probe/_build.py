"""Turn raw samples (the sampler's result, the stacks) into a model.Profile.

Pure functions of plain data: no clocks, no /proc, so tests can feed fake probe results
(a free-threaded run, an attach without the GIL's address) and check the Profile.

Each thread's time is cut into pieces (begin, end, state, lock, stack): its run-length
encoded states, split where its stack was read. A blocked thread runs no Python, so the
head of a blocked span (GIL, lock, I/O wait) takes the first stack read inside it (the
sampler records the first read of every new state run, and reads a blocked thread's stack
again whenever it was put on a CPU since), not the one read while it was still running. A
thread that woke and blocked again between two state samples shows as one blocked run: the
reads inside it split it between the waits. Blocked pieces then get their wait
reason from the stack (see _reasons); every figure (thread totals, timeline, functions,
folded stacks, locks) is made from the same pieces.
"""

from __future__ import annotations

import os
from bisect import bisect_left, bisect_right
from collections import defaultdict
from typing import Any, Callable, Iterable, Optional

from gilwise import _verdict
from gilwise._model import (
    Frame,
    FunctionStats,
    Profile,
    PythonInfo,
    StackStats,
    StateSpan,
    ThreadState,
    ThreadStats,
)
from gilwise._runtime import RuntimeFacts
from gilwise.probe._locks import lock_stats
from gilwise.probe._procfs import (
    FUTEX,
    GIL_WAIT,
    IDLE,
    IO_WAIT,
    JOIN_WAIT,
    LOCK_WAIT,
    RESULT_WAIT,
    RUNNING,
    STATE_NAMES,
    UNKNOWN,
)
from gilwise.probe._reasons import blocked_reason
from gilwise.probe._stacks import GILWISE_DIR, FrameSeries, FunctionKey, Stack

# A long run's timeline is resampled to at most this many spans (dominant state per bin),
# so a report of an hour-long run stays a few MB. Statistics always use every sample.
MAX_TIMELINE_SPANS = 20_000
# Keep the functions with the most GIL time.
MAX_FUNCTIONS = 200
# Keep the folded stacks with the most time (all of a short run's).
MAX_STACKS = 5_000

Span = tuple[float, float, int, int]  # (start_s, end_s, state code, lock), monotonic seconds
# (start_s, end_s, state code, lock address, stack root first or None when never read)
Piece = tuple[float, float, int, int, Optional[Stack]]

# States in which a thread runs no Python, so its stack stays put.
_STEADY = frozenset((GIL_WAIT, IO_WAIT, LOCK_WAIT, FUTEX))
# Frames shown in no stack: the profiler's own (monitor start/stop, the sampler thread).
_PROBE_DIR = os.path.join(GILWISE_DIR, "probe", "")


def thread_spans(
    series: dict[str, Any], start_s: float, stop_s: float, interval_s: float
) -> list[Span]:
    """The state spans of one thread from its run-length encoded samples."""
    times: list[float] = series["times"]
    states: list[int] = series["states"]
    locks: list[int] = series.get("locks") or [0] * len(states)
    end = min(series["last_s"] + interval_s, stop_s) if series["ended"] else stop_s
    spans = []
    for index, (begin, state) in enumerate(zip(times, states)):
        finish = times[index + 1] if index + 1 < len(times) else end
        begin = max(begin, start_s)
        if finish > begin:
            spans.append((begin, finish, state, locks[index]))
    return spans


def split_by_stacks(spans: list[Span], frames: Optional[FrameSeries]) -> list[Piece]:
    """Each span cut at the thread's stack reads, each piece with the stack in effect;
    blocked spans take the first stack read inside them for their head (see the module
    docstring). Blocked pieces keep their sampled state (see ``with_reasons``)."""
    if frames is None or not frames.times:
        return [(begin, end, state, lock, None) for begin, end, state, lock in spans]
    times, stacks = frames.times, frames.stacks
    count = len(times)
    out: list[Piece] = []
    for begin, end, state, lock in spans:
        index = bisect_right(times, begin)
        current = stacks[index - 1] if index > 0 else None
        if state in _STEADY:
            # The first read at or after the span's start: a read at the very sample whose
            # state began the span was made after that state read, so it is inside the span.
            first = bisect_left(times, begin)
            if first < count and times[first] < end:
                current = stacks[first]
        position = begin
        while index < count and times[index] < end:
            if times[index] > position:
                out.append((position, times[index], state, lock, current))
                position = times[index]
            current = stacks[index]
            index += 1
        out.append((position, end, state, lock, current))
    return out


def with_reasons(pieces: list[Piece]) -> list[Piece]:
    """Blocked pieces with the wait reason their stack tells (idle, join, result)."""
    reasons: dict[tuple[int, Stack], int] = {}
    out: list[Piece] = []
    for begin, end, state, lock, stack in pieces:
        if stack and state in (LOCK_WAIT, FUTEX, IO_WAIT):
            reason = reasons.get((state, stack))
            if reason is None:
                reason = reasons[(state, stack)] = blocked_reason(state, stack)
            out.append((begin, end, reason, lock if reason == LOCK_WAIT else 0, stack))
        else:
            out.append((begin, end, state, lock, stack))
    return out


def _own(key: FunctionKey) -> bool:
    return key[1].startswith(GILWISE_DIR)


def innermost(stack: Optional[Stack]) -> Optional[FunctionKey]:
    """The function a piece's time belongs to: the innermost frame, unless it is gilwise's
    own code (then none: gilwise never shows in the user's functions)."""
    if not stack or _own(stack[-1]):
        return None
    return stack[-1]


def shown_stack(stack: Optional[Stack]) -> Optional[tuple[Frame, ...]]:
    """The frames a report shows (root first): without gilwise's and runpy's frames at the
    root (the CLI and ``python -m`` plumbing); None when the innermost frame is the
    profiler's own or nothing is left."""
    if not stack or stack[-1][1].startswith(_PROBE_DIR):
        return None
    start = 0
    while start < len(stack) and (_own(stack[start]) or _is_runpy(stack[start][1])):
        start += 1
    if start == len(stack):
        return None
    return tuple(Frame(name, filename, line) for name, filename, line in stack[start:])


def _is_runpy(filename: str) -> bool:
    return filename.endswith(("runpy.py", "<frozen runpy>"))


def _totals(pieces: Iterable[Piece]) -> dict[int, float]:
    totals: dict[int, float] = defaultdict(float)
    for begin, end, state, _lock, _stack in pieces:
        totals[state] += end - begin
    return totals


def held_seconds(
    result: dict[str, Any], excluded: set[int], handoff_s: float = 0.0
) -> tuple[float, float]:
    """(seconds some thread other than ``excluded`` ones held the GIL, seconds the probe
    itself took): the probe's share is the time ``excluded`` threads (gilwise's stack
    sampler) held the GIL plus free gaps of at most ``handoff_s`` right before or after
    such a hold (the GIL hand-offs the sampler caused)."""
    times: list[float] = result["holder_times"]
    holders: list[int] = result["holder_tids"]
    stop = result["stop_s"]
    ends = [*times[1:], stop]
    held = probe = 0.0
    for index, (begin, end, holder) in enumerate(zip(times, ends, holders)):
        if holder in excluded:
            probe += end - begin
        elif holder != 0:
            held += end - begin
        elif end - begin <= handoff_s and (
            (index > 0 and holders[index - 1] in excluded)
            or (index + 1 < len(holders) and holders[index + 1] in excluded)
        ):
            probe += end - begin
    return held, probe


def attribute_functions(pieces: list[Piece]) -> dict[FunctionKey, dict[int, float]]:
    """Seconds per (innermost function, state)."""
    out: dict[FunctionKey, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for begin, end, state, _lock, stack in pieces:
        key = innermost(stack)
        if key is not None:
            out[key][state] += end - begin
    return out


def fold_stacks(
    tid: int, pieces: list[Piece], interval_s: float, shown_state: Callable[[int], ThreadState]
) -> list[StackStats]:
    """One StackStats per (state, shown stack) of a thread."""
    seconds: dict[tuple[int, Stack], float] = defaultdict(float)
    for begin, end, state, _lock, stack in pieces:
        if stack:
            seconds[(state, stack)] += end - begin
    folded: dict[tuple[ThreadState, tuple[Frame, ...]], float] = defaultdict(float)
    for (state, stack), total in seconds.items():
        frames = shown_stack(stack)
        if frames is not None:
            folded[(shown_state(state), frames)] += total
    return [
        StackStats(
            native_id=tid,
            state=state,
            frames=frames,
            seconds=total,
            samples=max(1, round(total / interval_s)) if interval_s > 0 else 0,
        )
        for (state, frames), total in folded.items()
    ]


def cap_timeline(spans: list[StateSpan], wall_s: float, limit: int) -> list[StateSpan]:
    """At most about ``limit`` spans: beyond it each thread's time is cut into equal bins
    and each bin shows its dominant state."""
    if len(spans) <= limit or wall_s <= 0:
        return spans
    by_thread: dict[int, list[StateSpan]] = defaultdict(list)
    for span in spans:
        by_thread[span.native_id].append(span)
    bins_per_thread = max(1, limit // max(1, len(by_thread)))
    width = wall_s / bins_per_thread
    capped: list[StateSpan] = []
    for native_id, own in by_thread.items():
        weights: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for span in own:
            position = span.start_s
            while position < span.end_s:
                index = min(int(position / width), bins_per_thread - 1)
                bin_end = min(span.end_s, (index + 1) * width)
                if bin_end <= position:  # float edge at the last bin
                    bin_end = span.end_s
                weights[index][span.state] += bin_end - position
                position = bin_end
        previous: Optional[StateSpan] = None
        for index in sorted(weights):
            state = max(weights[index].items(), key=lambda item: item[1])[0]
            start, end = index * width, min(wall_s, (index + 1) * width)
            if previous is not None and previous.state == state and previous.end_s >= start - 1e-12:
                previous = StateSpan(native_id, previous.state, previous.start_s, end)
                capped[-1] = previous
            else:
                previous = StateSpan(native_id, state, start, end)  # type: ignore[arg-type]
                capped.append(previous)
    return capped


def remote_frames(result: dict[str, Any]) -> dict[int, FrameSeries]:
    """The stack series the sampler child read from the target's memory (see _frames)."""
    table = [tuple(tuple(key) for key in stack) for stack in result.get("stack_table") or ()]
    return {
        int(tid): FrameSeries(list(data["times"]), [table[i] for i in data["stacks"]])
        for tid, data in (result.get("frames") or {}).items()
    }


def build_profile(
    result: dict[str, Any],
    runtime: RuntimeFacts,
    *,
    frames: Optional[dict[int, FrameSeries]] = None,
    names: Optional[dict[int, str]] = None,
    excluded: Iterable[int] = (),
    source: str = "in-process",
    command: Optional[str] = None,
    unavailable: Iterable[str] = (),
    max_timeline_spans: int = MAX_TIMELINE_SPANS,
) -> Profile:
    """A Profile (verdict included) from a Sampler.result() dict and optional frame series."""
    excluded_ids = set(excluded)
    frames = frames or {}
    names = names or {}
    start_s: float = result["start_s"]
    stop_s: float = result["stop_s"]
    interval_s: float = result["interval_s"]
    wall_s = max(stop_s - start_s, 0.0)
    gil_known: bool = result["gil_known"]
    gil_enabled: bool = result.get("gil_enabled", runtime.gil_enabled)
    notes = list(unavailable)

    threads: list[ThreadStats] = []
    timeline: list[StateSpan] = []
    functions: dict[FunctionKey, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    stacks: list[StackStats] = []
    all_pieces: dict[int, list[Any]] = {}
    thread_names: dict[int, str] = {}
    attach_states: dict[str, dict[str, float]] = {}
    for tid, series in sorted(result["threads"].items()):
        tid = int(tid)
        if tid in excluded_ids:
            continue
        spans = thread_spans(series, start_s, stop_s, interval_s)
        if not spans:
            continue
        has_stacks = tid in frames and bool(frames[tid].times)
        pieces = with_reasons(split_by_stacks(spans, frames.get(tid)))
        totals = _totals(pieces)
        thread_wall = spans[-1][1] - spans[0][0]
        cpu_s = None
        if series["cpu_last_ns"] is not None and series["cpu_first_ns"] is not None:
            cpu_s = max(0.0, (series["cpu_last_ns"] - series["cpu_first_ns"]) / 1e9)
        cpu_wait_s = None
        if series.get("delay_last_ns") is not None and series.get("delay_first_ns") is not None:
            cpu_wait_s = max(0.0, (series["delay_last_ns"] - series["delay_first_ns"]) / 1e9)
        name = names.get(tid) or series["name"] or f"thread-{tid}"
        thread_names[tid] = name
        threads.append(
            ThreadStats(
                name=name,
                native_id=tid,
                wall_s=thread_wall,
                cpu_s=cpu_s,
                gil_held_s=totals[0] if gil_known else None,
                gil_wait_s=totals[1] if gil_known else None,
                native_s=totals[2] if (gil_known or not gil_enabled) else None,
                io_wait_s=totals[3],
                lock_wait_s=totals[4] if (gil_known or not gil_enabled) else None,
                unknown_s=totals[UNKNOWN],
                cpu_wait_s=cpu_wait_s,
                idle_s=totals[IDLE] if has_stacks else None,
                join_wait_s=totals[JOIN_WAIT] if has_stacks else None,
                result_wait_s=totals[RESULT_WAIT] if has_stacks else None,
            )
        )
        if not gil_known and gil_enabled:
            attach_states[str(tid)] = {"running_s": totals[RUNNING], "futex_wait_s": totals[FUTEX]}
        timeline.extend(_timeline(tid, pieces, start_s))
        for key, per_state in attribute_functions(pieces).items():
            for state, seconds in per_state.items():
                functions[key][state] += seconds
        stacks.extend(fold_stacks(tid, pieces, interval_s, _shown_state))
        # A lock wait counts for a lock only where a stack told it was one (without one it
        # may be a Condition.wait, never contention).
        all_pieces[tid] = [
            (begin, end, state, lock if stack else 0, innermost(stack) if stack else None)
            for begin, end, state, lock, stack in pieces
        ]

    held_fraction: Optional[float] = None
    extra: dict[str, Any] = {
        "late_samples": result.get("late_samples", 0),
        "sampler_errors": list(result.get("errors", ())),
        "sampler_scheduling": result.get("scheduling", "normal"),
        "sampler_cpu_s": result.get("sampler_cpu_s"),
        "quiet_subsampled": bool(result.get("quiet_subsampled", False)),
        # The clock (time.monotonic, system-wide) at the timeline's 0: lets a caller place
        # its own events on the timeline (the pytest plugin's test boundaries).
        "start_monotonic_s": start_s,
    }
    if gil_known and wall_s > 0:
        held_s, probe_s = held_seconds(result, excluded_ids, handoff_s=2.5 * interval_s)
        # The stack sampler's own GIL holds (and the hand-offs they force) are not the
        # program's: they leave the denominator as well as the numerator.
        held_fraction = min(1.0, held_s / max(wall_s - probe_s, 1e-9))
        extra["probe_gil_s"] = probe_s
    elif not gil_enabled:
        notes.append(
            "gil: the GIL is disabled (free-threaded build); held_fraction and GIL times "
            "do not apply"
        )
    else:
        notes.append(
            "gil: the GIL's address in the target is unknown; held_fraction, GIL held/wait, "
            "native and lock-wait times are not measured (see extra.thread_states for running "
            "and futex-wait seconds)"
        )
        extra["thread_states"] = attach_states
    if not frames:
        notes.append(
            "functions: no Python stack samples (stacks were disabled, or could not be read: "
            "see the other notes)"
        )

    timeline.sort(key=lambda span: (span.start_s, span.native_id))
    profile = Profile(
        python=PythonInfo(runtime.version_text, runtime.implementation, gil_enabled),
        cores=runtime.cores,
        wall_s=wall_s,
        held_fraction=held_fraction,
        threads=tuple(threads),
        functions=_function_stats(functions),
        stacks=_top_stacks(stacks),
        locks=lock_stats(all_pieces, thread_names, interval_s) if frames else (),
        timeline=tuple(cap_timeline(timeline, wall_s, max_timeline_spans)),
        sample_interval_s=interval_s,
        samples=int(result["samples"]),
        source=source,
        unavailable=tuple(notes),
        command=command,
        extra=extra,
    )
    return profile.with_verdict(_verdict.verdict_for_profile(profile, runtime))


def _shown_state(state: int) -> ThreadState:
    return "unknown" if state in (RUNNING, FUTEX) else STATE_NAMES[state]  # type: ignore[return-value]


def _timeline(tid: int, pieces: list[Piece], start_s: float) -> list[StateSpan]:
    """A thread's pieces as spans of shown states, neighbours in one state merged."""
    spans: list[StateSpan] = []
    for begin, end, state, _lock, _stack in pieces:
        shown = _shown_state(state)
        if spans and spans[-1].state == shown and spans[-1].end_s >= begin - start_s - 1e-12:
            spans[-1] = StateSpan(tid, spans[-1].state, spans[-1].start_s, end - start_s)
        else:
            spans.append(StateSpan(tid, shown, begin - start_s, end - start_s))  # type: ignore[arg-type]
    return spans


def _top_stacks(stacks: list[StackStats]) -> tuple[StackStats, ...]:
    stacks.sort(key=lambda stack: stack.seconds, reverse=True)
    return tuple(stacks[:MAX_STACKS])


def _function_stats(functions: dict[FunctionKey, dict[int, float]]) -> tuple[FunctionStats, ...]:
    stats = [
        FunctionStats(
            function=name,
            file=filename,
            line=line,
            gil_held_s=per_state.get(0, 0.0),
            gil_wait_s=per_state.get(1, 0.0),
            native_s=per_state.get(2, 0.0),
            io_wait_s=per_state.get(3, 0.0),
            lock_wait_s=per_state.get(4, 0.0),
        )
        for (name, filename, line), per_state in functions.items()
    ]
    stats.sort(key=lambda f: (f.gil_held_s + f.gil_wait_s, f.native_s + f.io_wait_s), reverse=True)
    return tuple(stats[:MAX_FUNCTIONS])
