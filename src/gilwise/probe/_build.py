"""Turn raw samples (the sampler's result, the stack sampler's frames) into a model.Profile.

Pure functions of plain data: no clocks, no /proc, so tests can feed fake probe results
(a free-threaded run, an attach without the GIL's address) and check the Profile.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Optional

from gilwise import verdict as _verdict
from gilwise.model import FunctionStats, Profile, PythonInfo, StateSpan, ThreadStats
from gilwise.probe._procfs import FUTEX, RUNNING, STATE_NAMES, UNKNOWN
from gilwise.probe._stacks import FrameSeries, FunctionKey
from gilwise.runtime import RuntimeFacts

# A long run's timeline is resampled to at most this many spans (dominant state per bin),
# so a report of an hour-long run stays a few MB. Statistics always use every sample.
MAX_TIMELINE_SPANS = 20_000
# Keep the functions with the most GIL time.
MAX_FUNCTIONS = 200

Span = tuple[float, float, int]  # (start_s, end_s, state code), absolute monotonic seconds


def thread_spans(
    series: dict[str, Any], start_s: float, stop_s: float, interval_s: float
) -> list[Span]:
    """The state spans of one thread from its run-length encoded samples."""
    times: list[float] = series["times"]
    states: list[int] = series["states"]
    end = min(series["last_s"] + interval_s, stop_s) if series["ended"] else stop_s
    spans = []
    for index, (begin, state) in enumerate(zip(times, states)):
        finish = times[index + 1] if index + 1 < len(times) else end
        begin = max(begin, start_s)
        if finish > begin:
            spans.append((begin, finish, state))
    return spans


def _totals(spans: Iterable[Span]) -> dict[int, float]:
    totals: dict[int, float] = defaultdict(float)
    for begin, end, state in spans:
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


def attribute_functions(
    spans: list[Span], frames: Optional[FrameSeries]
) -> dict[FunctionKey, dict[int, float]]:
    """Seconds per (function, state): each span is split at the thread's frame snapshots."""
    out: dict[FunctionKey, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    if frames is None or not frames.keys:
        return out
    times, keys = frames.times, frames.keys
    cursor = 0
    for begin, end, state in spans:
        while cursor + 1 < len(times) and times[cursor + 1] <= begin:
            cursor += 1
        position = begin
        index = cursor
        while position < end:
            next_change = times[index + 1] if index + 1 < len(times) else end
            piece_end = min(end, max(next_change, position))
            key = keys[index]
            if key is not None and piece_end > position:
                out[key][state] += piece_end - position
            if piece_end >= end:
                break
            position = piece_end
            index += 1
    return out


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
    """The frame series the sampler child read from the target's memory (see _frames)."""
    return {
        int(tid): FrameSeries(list(data["times"]), list(data["keys"]))
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
    attach_states: dict[str, dict[str, float]] = {}
    for tid, series in sorted(result["threads"].items()):
        tid = int(tid)
        if tid in excluded_ids:
            continue
        spans = thread_spans(series, start_s, stop_s, interval_s)
        if not spans:
            continue
        totals = _totals(spans)
        thread_wall = spans[-1][1] - spans[0][0]
        cpu_s = None
        if series["cpu_last_ns"] is not None and series["cpu_first_ns"] is not None:
            cpu_s = max(0.0, (series["cpu_last_ns"] - series["cpu_first_ns"]) / 1e9)
        cpu_wait_s = None
        if series.get("delay_last_ns") is not None and series.get("delay_first_ns") is not None:
            cpu_wait_s = max(0.0, (series["delay_last_ns"] - series["delay_first_ns"]) / 1e9)
        threads.append(
            ThreadStats(
                name=names.get(tid) or series["name"] or f"thread-{tid}",
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
            )
        )
        if not gil_known and gil_enabled:
            attach_states[str(tid)] = {"running_s": totals[RUNNING], "futex_wait_s": totals[FUTEX]}
        for begin, end, state in spans:
            shown = "unknown" if state in (RUNNING, FUTEX) else STATE_NAMES[state]
            timeline.append(StateSpan(tid, shown, begin - start_s, end - start_s))  # type: ignore[arg-type]
        for key, per_state in attribute_functions(spans, frames.get(tid)).items():
            for state, seconds in per_state.items():
                functions[key][state] += seconds

    held_fraction: Optional[float] = None
    extra: dict[str, Any] = {
        "late_samples": result.get("late_samples", 0),
        "sampler_errors": list(result.get("errors", ())),
        "sampler_scheduling": result.get("scheduling", "normal"),
        "sampler_cpu_s": result.get("sampler_cpu_s"),
        "quiet_subsampled": bool(result.get("quiet_subsampled", False)),
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
        timeline=tuple(cap_timeline(timeline, wall_s, max_timeline_spans)),
        sample_interval_s=interval_s,
        samples=int(result["samples"]),
        source=source,
        unavailable=tuple(notes),
        command=command,
        extra=extra,
    )
    return profile.with_verdict(_verdict.verdict_for_profile(profile, runtime))


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
